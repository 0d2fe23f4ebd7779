"""Training-time changes to the images: random shifts and noise on blank pixels.

Both take away what makes MNIST's margins special to SET. A pixel that is blank in every
image has a constant input, so (with blank at 0) its weights get no gradient and a
connection there stays as it was born. Noise on blank pixels gives every pixel a varying
input; shifts move the digits so that no pixel is blank in every image. Test images are
never changed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..measures.topology import SIDE


@dataclass(frozen=True)
class Augmentation:
    """Shift then noise, drawn from ``generator`` (a CPU generator of its own, saved in
    the checkpoint, so that a resumed run draws what an uninterrupted one would).

    Attributes:
        max_shift: offsets on each axis are uniform in ``-max_shift .. max_shift`` pixels.
        blank_noise: standard deviation of the noise added to each blank pixel.
        blank: the input value of a blank pixel (0, or -0.424 for standardised inputs).
    """

    max_shift: int
    blank_noise: float
    blank: float

    @property
    def active(self) -> bool:
        return self.max_shift > 0 or self.blank_noise > 0

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``images`` ``(n, 784)`` -> a new ``(n, 784)`` tensor, shifted and noised."""
        if self.max_shift:
            offsets = torch.randint(-self.max_shift, self.max_shift + 1, (len(images), 2), generator=generator)
            images = shift_images(images, offsets.to(images.device), self.blank)
        if self.blank_noise:
            noise = torch.randn(images.shape, generator=generator).to(images.device, images.dtype)
            images = torch.where(images == self.blank, images + self.blank_noise * noise, images)
        return images


def shift_images(images: torch.Tensor, offsets: torch.Tensor, blank: float) -> torch.Tensor:
    """Move each ``28 x 28`` image by whole pixels.

    Args:
        images: ``(n, 784)`` row-major images.
        offsets: ``(n, 2)`` int (down, right) offsets; content moved out of the frame is
            lost, the uncovered border is ``blank``.
        blank: the fill value.

    Returns:
        ``(n, 784)``: ``out[i, r, c] = images[i, r - down_i, c - right_i]`` where that is
        inside the frame.
    """
    n = len(images)
    pad = int(offsets.abs().max()) if n else 0
    framed = torch.full((n, SIDE + 2 * pad, SIDE + 2 * pad), blank, dtype=images.dtype, device=images.device)
    framed[:, pad : pad + SIDE, pad : pad + SIDE] = images.reshape(n, SIDE, SIDE)
    steps = torch.arange(SIDE, device=images.device)
    rows = (pad - offsets[:, 0, None] + steps)[:, :, None]  # (n, 28, 1)
    cols = (pad - offsets[:, 1, None] + steps)[:, None, :]  # (n, 1, 28)
    return framed[torch.arange(n, device=images.device)[:, None, None], rows, cols].reshape(n, SIDE * SIDE)
