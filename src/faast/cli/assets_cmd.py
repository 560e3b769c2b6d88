"""``faast assets``: list and fetch the offline assets (weights and data from the registries), and
export the text data sets as example files."""

from __future__ import annotations

import argparse

from faast.assets import core
from faast.assets.export import EXPORTS


class _GroupsHelp(argparse.HelpFormatter):
    """Fills ``%(groups)s`` with the groups of the registered assets when the help is shown (the
    asset modules are imported then, not whenever the CLI starts)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = super()._get_help_string(action)
        if text and "%(groups)s" in text:
            text = text.replace("%(groups)s", ", ".join(core.asset_groups()))
        return text


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("assets", help="list, fetch or export offline assets (weights, datasets)")
    p.add_argument("--cache-dir", default=None, help=core.CACHE_DIR_HELP)
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = actions.add_parser("list", help="show every asset, its groups and whether it is fetched")
    ls.set_defaults(func=run_list)
    fe = actions.add_parser(
        "fetch", help="fetch assets by name or group (default group: demo)", formatter_class=_GroupsHelp
    )
    fe.add_argument("names", nargs="*", help="asset names (default: every asset of --group)")
    fe.add_argument(
        "--group", default=None, help="fetch every asset of this group (%(groups)s; without names: demo)"
    )
    fe.add_argument(
        "--force",
        action="store_true",
        help="fetch again even when an asset looks ready (a damaged copy: the old one is replaced only "
        "once the new one is complete)",
    )
    fe.set_defaults(func=run_fetch)
    ex = actions.add_parser(
        "export",
        help="write a labelled or paired text asset as examples for faast task and faast classify",
        description="write a labelled or paired text asset as examples, input<TAB>output (.tsv), CSV or "
        "JSONL (fetched first when missing): "
        + "; ".join(f"{name}: {what}" for name, (what, _) in EXPORTS.items()),
    )
    ex.add_argument("name", help=", ".join(EXPORTS))
    ex.add_argument("--out", required=True, help="the examples file (.tsv, .csv or .jsonl)")
    ex.add_argument("--test", type=int, default=0, help="hold out this many examples, drawn first")
    ex.add_argument("--test-out", default=None, help="where the held-out examples go (.tsv, .csv or .jsonl)")
    ex.add_argument("--limit", type=int, default=None, help="write at most this many examples to --out")
    ex.add_argument("--seed", type=int, default=0, help="seed of the order and the held-out draw (default 0)")
    ex.set_defaults(func=run_export)


def run_list(args: argparse.Namespace) -> int:
    """Show every asset and whether it is ready. It only reads: a cache that is missing (or cannot
    be made) is not created, its assets are listed missing."""
    cache = core.read_cache_dir(args.cache_dir)
    assets = core.all_assets()
    if not assets:
        print("no assets are registered")
    for name, asset in sorted(assets.items()):
        state = "ready" if asset.ready(cache / name) else "missing"
        groups = ", ".join(asset.groups)
        print(f"{name:22s} {state:8s} {asset.size_mb:7.0f} MB  [{groups}]  {asset.description}")
    print(f"cache: {cache}")
    return 0


def run_fetch(args: argparse.Namespace) -> int:
    assets = core.all_assets()
    names = list(args.names)
    group = args.group or ("demo" if not names else None)
    if group is not None:
        in_group = [n for n, a in sorted(assets.items()) if group == "all" or group in a.groups]
        if not in_group:
            raise ValueError(f"no assets in group {group!r}; groups: {', '.join(core.asset_groups())}")
        names += in_group
    for name in dict.fromkeys(names):
        asset = core.get_asset(name)
        root = core.asset_root(name, args.cache_dir)
        if asset.ready(root) and not args.force:
            core.remove_dead_fetches(name, args.cache_dir)  # what a killed `fetch --force` left
            print(f"[faast] {name}: ready in {root}")
            continue
        again = " again" if args.force else ""
        print(f"[faast] {name}: fetching{again} ({asset.description}, ~{asset.size_mb:.0f} MB)", flush=True)
        (core.refetch if args.force else core.ensure)(name, args.cache_dir)
        print(f"[faast] {name}: ready in {root}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from faast.assets.export import export_examples

    written, held = export_examples(
        args.name,
        args.out,
        test=args.test,
        test_out=args.test_out,
        limit=args.limit,
        seed=args.seed,
        cache=args.cache_dir,
    )
    also = f" and {held:,} held out to {args.test_out}" if held else ""
    print(f"[faast] {args.name}: wrote {written:,} examples to {args.out}{also} (seed {args.seed})")
    return 0
