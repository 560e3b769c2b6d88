"""Images from a folder: the torchvision ``ImageFolder`` layout (one sub-folder per class) or a
flat folder of unlabelled images, decoded with Pillow and resized to one square size."""

from __future__ import annotations

import contextlib
import hashlib
import os
import unicodedata
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from faast.data.dataset import ImageDataset

if TYPE_CHECKING:
    from collections.abc import Iterator

    from PIL.Image import Image as PILImage

#: File extensions read as images (case-insensitive), as torchvision's ImageFolder.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


#: The label :func:`list_image_folder` gives an image beside the class folders when asked to
#: list it (``loose``: images to predict): in no class.
NO_CLASS = -1

#: How many unreadable images an error names (then a count of the others).
SHOWN_UNREADABLE = 5

#: Folders that are never classes nor hold examples: what unzipping a macOS archive adds.
NOT_DATA_FOLDERS = frozenset({"__MACOSX"})


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def _is_data_folder(path: Path) -> bool:
    """False for hidden folders (.ipynb_checkpoints, .git) and macOS archive leftovers."""
    return not path.name.startswith(".") and path.name not in NOT_DATA_FOLDERS


def _walk(folder: Path, read: frozenset[str] = frozenset(), looped: list[Path] | None = None) -> list[Path]:
    """Every file below ``folder``, not descending into hidden or :data:`NOT_DATA_FOLDERS` folders
    (a Jupyter checkpoint copy of an image is not another example). Linked folders are followed,
    as torchvision's ImageFolder follows them, each real folder once: a link to a folder read
    already — ``folder`` itself, one of ``read`` (the real paths of the image folder and of every
    class folder), or a folder linked twice — or to a folder above one of ``read`` is skipped
    (a link back up is no loop, and does not make the other classes' images examples of this
    one), and noted in ``looped``."""
    found = []
    seen = {os.path.realpath(folder), *read}
    for here, dirs, names in os.walk(folder, followlinks=True):
        kept = []
        for d in sorted(d for d in dirs if _is_data_folder(Path(d))):
            real = os.path.realpath(os.path.join(here, d))
            if real not in seen and not any(_is_above(real, r) for r in read):
                seen.add(real)
                kept.append(d)
            elif looped is not None and os.path.islink(os.path.join(here, d)):
                looped.append(Path(here) / d)
        dirs[:] = kept
        found += [Path(here) / n for n in names]
    return found


def _is_above(folder: str, other: str) -> bool:
    """Whether the real path ``folder`` holds the real path ``other`` (a link to it would lead
    back into ``other``)."""
    return os.path.commonpath([folder, other]) == folder and folder != other


#: Errors Pillow raises on a damaged file beyond ``OSError`` (a broken PNG chunk is a
#: ``SyntaxError``; bad TIFF tags and PPM headers raise ``ValueError``, ``TypeError`` and more).
_DECODE_ERRORS: tuple[type[BaseException], ...] = (OSError, SyntaxError, ValueError, TypeError, IndexError)


def list_image_folder(
    root: str | os.PathLike[str], *, loose: bool = False
) -> tuple[list[Path], list[str] | None, list[int]]:
    """(image paths, class names or None, label per image) of ``root``.

    With sub-folders (ImageFolder layout) the classes are the sub-folder names in sorted order and
    every image file below one is an example of it; without, the images directly in ``root`` are
    unlabelled (class names None, labels all 0). The images directly in ``root`` beside class
    folders are in no class: skipped with a warning, or with ``loose`` (images to predict) listed
    first, each of label -1 (:data:`NO_CLASS`). Hidden files and folders (``.DS_Store``,
    ``.ipynb_checkpoints``) and ``__MACOSX`` folders are neither classes nor examples. Class names
    are in Unicode's composed form (NFC): a folder "ü" unzipped from a macOS archive, decomposed
    (NFD: "u" then a combining diaeresis), is the class "ü" of a folder written elsewhere; two
    folders whose names differ only so are refused. A file or folder name below ``root`` that is
    not UTF-8 text (a Latin-1 name unzipped on Linux) is refused, naming it, before any image is
    read: it can be neither a class name nor a row of the predictions CSV. A linked folder inside
    a class folder that leads back to ``root`` or a class folder is skipped with a warning.
    """
    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(f"no such image folder: {base}")
    subdirs = sorted(p for p in base.iterdir() if p.is_dir() and _is_data_folder(p))
    # the image folder and the class folders count as read in every walk: a link back to one of
    # them inside a class folder is skipped, not read as more examples of that class
    read = frozenset(os.path.realpath(p) for p in [base, *subdirs])
    looped: list[Path] = []
    walks = {sub: _walk(sub, read, looped) for sub in subdirs}  # one walk per class folder
    if loose:  # images to predict: a folder without images holds none of them
        subdirs = _without_bare_folders(base, subdirs, walks)
    if subdirs:
        paths, labels, entries, empty = [], [], [], []
        for label, sub in enumerate(subdirs):
            below = walks[sub]
            files = sorted(p for p in below if _is_image(p))
            if not files:
                empty.append(sub)
            paths += files
            labels += [label] * len(files)
            entries += below
        if empty:
            raise ValueError(_without_images(base, empty, walks))
        beside = sorted(p for p in base.iterdir() if _is_image(p))
        _check_names(base, (beside if loose else []) + paths)
        _warn_one_class_of_folders(base, subdirs, paths, labels)
        names = _class_names(base, subdirs)
        if beside and loose:  # images to predict: unlabelled, as those of a flat folder
            paths, labels = beside + paths, [NO_CLASS] * len(beside) + labels
        elif beside:  # beside the class folders: in no class
            warnings.warn(
                f"{base}: skipped {len(beside)} image(s) beside the class folders, in no class "
                f"(e.g. {beside[0].name}): put them in a class folder, or predict them from a folder of "
                "their own",
                UserWarning,
                stacklevel=2,
            )
        _warn_skipped(base, entries)
        _warn_looped(base, looped)
        return paths, names, labels
    entries = list(base.iterdir())
    files = sorted(p for p in entries if _is_image(p))
    if not files:
        raise ValueError(f"{base}: no images (extensions {', '.join(IMAGE_EXTENSIONS)}) and no class folders")
    _check_names(base, files)
    _warn_skipped(base, entries)
    return files, None, [0] * len(files)


#: How many files of another extension the error on a class folder without images names.
SHOWN_SKIPPED = 3


def _without_images(base: Path, empty: list[Path], walks: dict[Path, list[Path]]) -> str:
    """The error on the class folders ``empty`` of ``base``, which hold no image (``walks``: the
    files below each): each named with the files found in it that are not read — their extension
    is not one of :data:`IMAGE_EXTENSIONS` (GIFs, RAW photos) —, a few of them then a count, and
    the extensions that are read."""
    named = []
    for sub in empty[:5]:
        other = sorted(p for p in walks[sub] if p.is_file() and not p.name.startswith("."))
        if other:
            shown = ", ".join(str(p.relative_to(sub)) for p in other[:SHOWN_SKIPPED])
            more = f" and {len(other) - SHOWN_SKIPPED} more" if len(other) > SHOWN_SKIPPED else ""
            named.append(f"{sub.name} ({len(other)} file(s) of other extensions, skipped: {shown}{more})")
        else:
            named.append(f"{sub.name} (empty)")
    others = f", and {len(empty) - 5} more" if len(empty) > 5 else ""
    return (
        f"{base}: class folder(s) without images: {', '.join(named)}{others}; images are files ending in "
        f"{', '.join(IMAGE_EXTENSIONS)} (any case): convert the others (e.g. GIFs to PNG) or remove the "
        "folder"
    )


def _without_bare_folders(base: Path, subdirs: list[Path], walks: dict[Path, list[Path]]) -> list[Path]:
    """``subdirs`` less those without an image below them (``walks``: the files below each), with a
    warning naming them: images to predict need no class folders, so an empty one beside them
    (a thumbnails folder, an output folder) is skipped rather than refused as a class."""
    bare = [sub for sub in subdirs if not any(_is_image(p) for p in walks[sub])]
    if bare:
        warnings.warn(
            f"{base}: skipped {len(bare)} folder(s) without images ({', '.join(s.name for s in bare[:5])})",
            UserWarning,
            stacklevel=3,
        )
    return [sub for sub in subdirs if sub not in bare]


def _class_names(base: Path, subdirs: list[Path]) -> list[str]:
    """The class names of the class folders ``subdirs`` of ``base``, in Unicode's composed form
    (NFC); two folders of one name written in two forms (NFC and NFD) are a ``ValueError``."""
    names = [unicodedata.normalize("NFC", sub.name) for sub in subdirs]
    seen: dict[str, str] = {}
    for sub, name in zip(subdirs, names, strict=True):
        if name in seen:
            raise ValueError(
                f"{base}: class folders {seen[name]!r} and {sub.name!r} differ only in Unicode normalisation "
                "(NFC vs NFD: one name written two ways, e.g. one unzipped from a macOS archive): they would "
                "be one class; move the images of one into the other"
            )
        seen[name] = sub.name
    return names


def _warn_one_class_of_folders(base: Path, subdirs: list[Path], paths: list[Path], labels: list[int]) -> None:
    """Warn when the class folders ``subdirs`` hold their images (``paths``, of class index
    ``labels``) only in folders of their own — one class folder, or several that all hold folders
    of the same names (``train/`` and ``val/``, each with ``red/`` and ``blue/``): the layout's
    root is most likely one level down (``fit photos`` for ``photos/train/<class>/``), and the
    images would be learned as classes named after the split folders."""
    if not paths or any(p.parent == subdirs[label] for p, label in zip(paths, labels, strict=True)):
        return  # an image directly in a class folder: a class of its own
    inner: list[set[str]] = [set() for _ in subdirs]
    for p, label in zip(paths, labels, strict=True):
        inner[label].add(p.relative_to(subdirs[label]).parts[0])
    if len(subdirs) == 1:
        warnings.warn(
            f"{base}: one class, {subdirs[0].name!r}, whose images all lie in its sub-folders "
            f"({', '.join(sorted(inner[0])[:4])}): if those are the classes, give {subdirs[0]} as the folder",
            UserWarning,
            stacklevel=3,
        )
    elif len(inner[0]) > 1 and all(names == inner[0] for names in inner):
        shown = ", ".join(sub.name for sub in subdirs[:4]) + (", ..." if len(subdirs) > 4 else "")
        warnings.warn(
            f"{base}: the {len(subdirs)} classes ({shown}) each hold their images only in sub-folders of "
            f"the same names ({', '.join(sorted(inner[0])[:4])}): if those are the classes and "
            f"{', '.join(sub.name for sub in subdirs[:2])} are splits of the data, give one split as the "
            f"folder (e.g. {subdirs[0]})",
            UserWarning,
            stacklevel=3,
        )


def _check_names(base: Path, paths: list[Path]) -> None:
    """Refuse image paths below ``base`` whose file or folder names are not UTF-8 text (read by
    Python with surrogate escapes: a Latin-1 ``caf\\xe9.png`` unzipped from an old Windows archive),
    naming them: a class folder so named could not be saved as a class, nor such an image written
    as a row of the predictions CSV (which failed once every image was encoded)."""
    bad = [p for p in paths if not _is_utf8(str(p.relative_to(base)))]
    if not bad:
        return
    shown = ", ".join(_shown(p.relative_to(base)) for p in bad[:3]) + (
        f" and {len(bad) - 3} more" if len(bad) > 3 else ""
    )
    raise ValueError(
        f"{base}: {len(bad)} image(s) whose file or folder names are not UTF-8 text: {shown}; rename them "
        f"to UTF-8 (e.g. from Latin-1: convmv -f latin1 -t utf-8 -r --notest {_shown(base)})"
    )


def _is_utf8(text: str) -> bool:
    """Whether ``text`` (a name read from the file system) is UTF-8 text, not bytes escaped."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _shown(path: Path) -> str:
    """``path`` printable: a byte that is not UTF-8 text written as ``\\xe9``."""
    return os.fsencode(path).decode("utf-8", errors="backslashreplace")


def _warn_looped(base: Path, looped: list[Path]) -> None:
    """Warn about the linked folders inside class folders that were skipped (``looped``) because
    they lead back to a folder read already: the image folder ``base``, a class folder, a folder
    above them, or a folder linked twice."""
    if looped:
        first = looped[0]
        warnings.warn(
            f"{base}: skipped {len(looped)} linked folder(s) that lead back to a folder read already (the "
            f"image folder, a class folder, or one linked twice), e.g. {first.relative_to(base)} -> "
            f"{os.readlink(first)}: their images are read once, in their own class; remove the link",
            UserWarning,
            stacklevel=3,
        )


def _warn_skipped(base: Path, entries: list[Path]) -> None:
    """Warn about the files among ``entries`` that are not read (another extension; hidden files
    such as .DS_Store aside; links to nothing), so that a class's GIFs or RAW photos are not left
    out unnoticed."""
    broken = [p for p in entries if p.is_symlink() and not p.exists() and not p.name.startswith(".")]
    if broken:
        warnings.warn(
            f"{base}: skipped {len(broken)} link(s) to nothing, e.g. {broken[0].relative_to(base)}",
            UserWarning,
            stacklevel=3,
        )
    skipped = [
        p
        for p in entries
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() not in IMAGE_EXTENSIONS
    ]
    if skipped:
        kinds = sorted({p.suffix.lower() or "(none)" for p in skipped})
        warnings.warn(
            f"{base}: skipped {len(skipped)} file(s) that are not read as images (extensions "
            f"{', '.join(kinds[:6])}; read: {', '.join(IMAGE_EXTENSIONS)}), "
            f"e.g. {skipped[0].relative_to(base)}",
            UserWarning,
            stacklevel=3,
        )


#: What a transparent pixel is read as: the colour of the page most viewers show an image on.
BACKGROUND = (255, 255, 255)

#: Modes whose pixels carry an alpha channel (``PA``: a palette with one; ``La``, ``RGBa``: the
#: colours premultiplied by it).
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "La", "RGBa"})


def _to_rgb(im: PILImage, path: Path) -> PILImage:
    """An 8-bit RGB copy of a Pillow image, turned upright by its EXIF orientation. 16-bit
    greyscale (modes ``I;16*``, and ``I`` holding values in [0, 65535]) is scaled by 255/65535
    first: Pillow's own conversion clips it at 255, which turns such an image nearly all white. The
    scale is the fixed one of 16 bits, not each image's own range, so that one value is one grey in
    every image; a mode ``I`` image (32-bit integers) holding values within [0, 255] only, most
    likely 8-bit data saved as 32 bits, is read so too (nearly black), with a warning.
    Float images and 32-bit integers beyond 16 bits have no known range and are refused.
    Transparent pixels (an alpha channel, or a palette's or a colour's transparency) are laid over
    :data:`BACKGROUND` (white), as a viewer shows them, not read by the colour stored under them:
    two logos that look alike are read alike."""
    from PIL import Image, ImageOps

    im = ImageOps.exif_transpose(im)  # a phone photo's orientation tag: upright, as viewers show it
    if im.mode.startswith("I;16") or im.mode == "I":
        values = np.asarray(im, dtype=np.int64)
        if values.min() < 0 or values.max() > 65535:
            raise ValueError(
                f"cannot read image {path}: 32-bit integer pixels beyond [0, 65535] have no known "
                "range to map to 8-bit colour; convert the image to 8 or 16 bits first"
            )
        if im.mode == "I" and 0 < values.max() <= 255:  # named by load_image_folder's warnings
            warnings.warn(
                "32-bit integer pixels all within [0, 255], read as 16-bit values (scaled by 255/65535, "
                "as 16-bit images are), so nearly black; if they are 8-bit values, save the image as "
                "8-bit (Pillow: image.convert('L'))",
                UserWarning,
                stacklevel=2,
            )
        grey = np.round(values * (255 / 65535)).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")  # uint8 (h, w): mode L
    if im.mode == "F":
        raise ValueError(
            f"cannot read image {path}: floating-point pixels have no known "
            "range to map to 8-bit colour; convert the image to 8 or 16 bits first"
        )
    if im.mode in _ALPHA_MODES or "transparency" in im.info:
        if im.mode == "La":  # premultiplied grey (a TIFF's associated alpha): Pillow goes on from LA
            im = im.convert("LA")
        rgba = im.convert("RGBA")  # a palette's or a colour's transparency as alpha too
        page = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        return Image.alpha_composite(page, rgba).convert("RGB")
    return im.convert("RGB")


def load_image_folder(
    root: str | os.PathLike[str],
    size: int,
    *,
    listing: tuple[list[Path], list[str] | None, list[int]] | None = None,
) -> tuple[ImageDataset, list[str], bool]:
    """The images of ``root`` as an :class:`ImageDataset` of RGB uint8 (n, size, size, 3).

    Returns (dataset, paths relative to ``root``, labelled). Its name holds a hash of the
    folder's absolute path, so the feature cache keeps one entry per folder (and its content
    fingerprint re-encodes the folder when images change). ``listing``: what
    :func:`list_image_folder` returned for ``root`` when the caller listed it already (so that its
    warnings are given once); images of label :data:`NO_CLASS` are the dataset's class ``"?"``
    (its split ``images-and-loose``: a feature cache entry apart from that of the class folders).
    Every image is decoded before an unreadable one is refused: the ``ValueError`` names each
    (the first :data:`SHOWN_UNREADABLE`, then how many more), not only the first.
    """
    from PIL import Image

    if size < 1:
        raise ValueError(f"image size must be >= 1, got {size}")
    paths, classes, labels = list_image_folder(root) if listing is None else listing
    images = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    unreadable: list[str] = []
    seen: dict[tuple[type[Warning], str], list[Path]] = {}
    for i, path in enumerate(paths):
        try:
            with _naming_warnings(path, seen), Image.open(path) as im:
                images[i] = np.asarray(_to_rgb(im, path).resize((size, size), Image.BILINEAR))
        except (*_DECODE_ERRORS, Image.DecompressionBombError) as exc:  # corrupt, truncated, too large
            if isinstance(exc, ValueError) and str(exc).startswith("cannot read image"):
                unreadable.append(str(exc))  # ours, already naming the file
                continue
            kind = (
                "" if isinstance(exc, (OSError, Image.DecompressionBombError)) else f"{type(exc).__name__}: "
            )
            unreadable.append(f"cannot read image {path}: {kind}{exc}")  # the type if unclear
    _warn_naming_images(seen)
    if unreadable:
        raise ValueError(_unreadable_message(unreadable)) from None
    base = Path(root).resolve()
    # the folder's name, cut to keep the cache's file name within the 255 bytes file systems allow
    # (the hash of the whole path keeps it unique); as bytes, so that a folder name that is not
    # UTF-8 text is no error (its other bytes are dropped from the cut name)
    short = os.fsencode(base.name)[:64].decode(errors="ignore")
    name = f"folder-{short}-{hashlib.sha256(os.fsencode(base)).hexdigest()[:12]}"
    names, split = tuple(classes or ("?",)), "images"
    if classes is not None and NO_CLASS in labels:  # images beside the class folders, to predict:
        names, split = (*names, "?"), "images-and-loose"  # a cache entry apart from fit's, not stale
    index = np.asarray([len(names) - 1 if label == NO_CLASS else label for label in labels], dtype=np.int64)
    dataset = ImageDataset(name, split, images, index, names)
    return dataset, [p.relative_to(root).as_posix() for p in paths], classes is not None


@contextlib.contextmanager
def _naming_warnings(path: Path, seen: dict[tuple[type[Warning], str], list[Path]]) -> Iterator[None]:
    """Note the warnings PIL raises while an image is decoded (a decompression-bomb size, a
    palette's transparency) in ``seen`` — by kind and message, the images that raised each — for
    :func:`_warn_naming_images`: PIL's own do not name the file."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        seen.setdefault((w.category, str(w.message)), []).append(path)


def _warn_naming_images(seen: dict[tuple[type[Warning], str], list[Path]]) -> None:
    """One warning for each kind PIL raised, naming the first image and counting the others."""
    for (category, message), paths in seen.items():
        more = f" (and {len(paths) - 1} more images)" if len(paths) > 1 else ""
        warnings.warn(f"{paths[0]}{more}: {message}", category, stacklevel=3)


def _unreadable_message(problems: list[str]) -> str:
    """One error for every unreadable image (``problems``: one "cannot read image PATH: why" each):
    the first alone as it is, several on one line, the first :data:`SHOWN_UNREADABLE` named and
    the others counted."""
    if len(problems) == 1:
        return problems[0]
    shown = "; ".join(problems[:SHOWN_UNREADABLE])
    more = len(problems) - SHOWN_UNREADABLE
    rest = f"; and {more} more" if more > 0 else ""
    return (
        f"{len(problems)} images cannot be read: {shown}{rest} (remove or replace them, or move them out "
        "of the folder)"
    )
