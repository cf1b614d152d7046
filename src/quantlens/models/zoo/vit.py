"""ViT-Tiny (Dosovitskiy et al. 2021; DeiT-Tiny dimensions) with every operation as a module.

Pre-norm transformer blocks: x + attn(norm1(x)), then x + mlp(norm2(x)); class token and learned
position embeddings; the head reads the class token. Attention is spelt out so that quantization
can wrap each step: one `nn.Linear` for Q/K/V, a `MatMul` for q @ k^T and another for attn @ v,
an `nn.Softmax` module, and `Add` modules for the residuals and the position embedding.
Key names follow the common ViT layout (`patch_embed.proj`, `cls_token`, `pos_embed`,
`blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}`, `norm`, `head`).

The position embedding has one entry per patch of an `image_size` x `image_size` input, so a
model serves only the input size it was built for.
"""

from __future__ import annotations

import torch
from torch import nn

from quantlens.errors import ModelError
from quantlens.models.registry import register_model
from quantlens.models.zoo.common import check_build_args
from quantlens.nn.ops import Add, MatMul

MIN_IMAGE_SIZE = 8
LARGE_IMAGE_SIZE = 64  # from here on the default patch is 16; below it, 4 (28x28 -> 7x7 patches)


class PatchEmbedding(nn.Module):
    def __init__(self, in_channels: int, embed_dim: int, patch_size: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, embed_dim, patch_size, patch_size)
        self.flatten = nn.Flatten(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.flatten(self.proj(x)).transpose(1, 2)  # (B, C, H/p, W/p) -> (B, N, C)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.matmul_qk = MatMul()
        self.softmax = nn.Softmax(dim=-1)
        self.attn_drop = nn.Dropout(dropout)
        self.matmul_av = MatMul()
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, N, head_dim)
        scores = self.matmul_qk(q * self.scale, k.transpose(-2, -1))  # (B, heads, N, N)
        attn = self.attn_drop(self.softmax(scores))
        out = self.matmul_av(attn, v)  # (B, heads, N, head_dim)
        out = out.transpose(1, 2).reshape(batch, tokens, dim)  # (B, N, C)
        return self.proj_drop(self.proj(out))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden_dim: int, dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.act(self.fc1(x))))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, dropout)
        self.add_attn = Add()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, mlp_dim, dropout)
        self.add_mlp = Add()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.add_attn(x, self.attn(self.norm1(x)))
        return self.add_mlp(x, self.mlp(self.norm2(x)))


class VisionTransformer(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, image_size: int, patch_size: int, embed_dim: int,
                 depth: int, num_heads: int, mlp_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.image_size = image_size
        self.num_patches = (image_size // patch_size) ** 2
        self.patch_embed = PatchEmbedding(in_channels, embed_dim, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches + 1, embed_dim))
        self.add_pos = Add()
        self.pos_drop = nn.Dropout(dropout)
        self.blocks = nn.Sequential(*(Block(embed_dim, num_heads, mlp_dim, dropout) for _ in range(depth)))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head = nn.Linear(embed_dim, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(x)  # (B, N, C)
        if tokens.shape[1] != self.num_patches:
            raise ModelError(f"vit built for {self.image_size}x{self.image_size} inputs "
                             f"({self.num_patches} patches) got {tuple(x.shape[-2:])} ({tokens.shape[1]} patches)")
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)  # (B, 1, C)
        x = self.add_pos(torch.cat((cls, tokens), dim=1), self.pos_embed)  # (B, N+1, C)
        x = self.norm(self.blocks(self.pos_drop(x)))
        return self.head(x[:, 0])  # class token -> (B, classes)


@register_model("vit_tiny", input_size=224, min_input_size=MIN_IMAGE_SIZE,
                description="ViT-Tiny (192 dim, 12 blocks, 3 heads); patch 16, or 4 below 64 px")
def vit_tiny(*, num_classes: int, in_channels: int, image_size: int, patch_size: int | None = None,
             embed_dim: int = 192, depth: int = 12, num_heads: int = 3, mlp_ratio: float = 4.0,
             dropout: float = 0.0) -> nn.Module:
    """ViT-Tiny; options: `patch_size` (default 16 for image_size >= 64, else 4), `embed_dim`,
    `depth`, `num_heads`, `mlp_ratio`, `dropout`."""
    check_build_args("vit_tiny", num_classes=num_classes, in_channels=in_channels, image_size=image_size,
                     min_image_size=MIN_IMAGE_SIZE)
    if patch_size is None:
        patch_size = 16 if image_size >= LARGE_IMAGE_SIZE else 4
    if patch_size < 1 or image_size % patch_size != 0:
        raise ModelError(f"vit_tiny: image_size {image_size} is not divisible by patch_size {patch_size}; "
                         f"pick a patch size that divides the image side (or resize the images)")
    if embed_dim % num_heads != 0:
        raise ModelError(f"vit_tiny: embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
    return VisionTransformer(num_classes, in_channels, image_size, patch_size, embed_dim, depth, num_heads,
                             int(embed_dim * mlp_ratio), dropout)
