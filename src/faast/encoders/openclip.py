"""open_clip image/text towers as a frozen encoder (optional extra ``clip``; needs internet once).

Not used by the demo or the tests: open_clip downloads its weights from a model hub. With CLIP,
FAAST can regress onto class-text embeddings and use the zero-shot identity prior
(``FaastClassifier(class_embeddings=encoder.text_embeddings(names), prior="identity", n0=400)``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from faast.encoders.base import ImageEncoder, to_rgb_batch


class OpenClipEncoder(ImageEncoder):
    """L2-normalised CLIP image embeddings. model/pretrained: open_clip names (``RN50``/``openai``).

    The images are resized to the model's own input size (``resolution``, from its preprocessing
    configuration: 224 for RN50), for which its positional embeddings are learned: no other size
    can be asked for (``faast classify fit --resolution`` refuses one).
    """

    batch_dependent = True  # a network whose kernels may vary with the batch's size

    def __init__(self, model: str = "RN50", pretrained: str = "openai", *, device: str = "cpu") -> None:
        try:
            import open_clip
        except ImportError as exc:
            raise ImportError("CLIP encoders need open_clip: pip install 'faast[clip]'") from exc
        self.model, _, _ = open_clip.create_model_and_transforms(model, pretrained=pretrained, device=device)
        self.model.eval().requires_grad_(False)
        self.tokenizer = open_clip.get_tokenizer(model)
        self.model_name, self.pretrained, self.device = model, pretrained, torch.device(device)
        cfg = self.model.visual.preprocess_cfg
        size = cfg.get("size", 224)
        self.resolution = int(size if isinstance(size, int) else size[0])
        self.mean = torch.tensor(cfg.get("mean", (0.48145466, 0.4578275, 0.40821073))).view(1, 3, 1, 1)
        self.std = torch.tensor(cfg.get("std", (0.26862954, 0.26130258, 0.27577711))).view(1, 3, 1, 1)
        self.name = f"clip-{model}-{pretrained}"
        self.feature_dim = int(self.model.visual.output_dim)

    def identity(self) -> dict[str, str]:
        return {
            "encoder": self.name,
            "weights_sha256": f"open_clip:{self.model_name}/{self.pretrained}",
            "resolution": str(self.resolution),
            "preprocess": "v1:bilinear,grey-to-rgb,clip-mean-std,l2",
            "feature_dim": str(self.feature_dim),
        }

    @torch.inference_mode()
    def encode(self, images: np.ndarray) -> torch.Tensor:
        """uint8 (B, H, W[, 3]) → L2-normalised float32 (B, D)."""
        x = to_rgb_batch(images, self.resolution) / 255.0
        x = ((x - self.mean) / self.std).to(self.device)
        return F.normalize(self.model.encode_image(x).float(), dim=1).cpu()

    @torch.inference_mode()
    def text_embeddings(self, class_names: list[str], template: str = "A photo of a {}.") -> torch.Tensor:
        """L2-normalised text embeddings (C, D) of one prompt per class (the paper's values)."""
        tokens = self.tokenizer([template.format(c) for c in class_names]).to(self.device)
        return F.normalize(self.model.encode_text(tokens).float(), dim=1).cpu()
