"""De-tokenizer parts: the 3D U-Net, the condition resampler, the schedule, the samplers and the VAE glue."""

from divot.diffusion.condition import ConditionResampler
from divot.diffusion.config import (
    ConditionResamplerConfig,
    ScheduleConfig,
    UNetConfig,
    VAEConfig,
    condition_preset,
    unet_preset,
    vae_preset,
)
from divot.diffusion.detokenizer import (
    DETOKENIZER_PRESETS,
    Detokenizer,
    DetokenizerConfig,
    detokenizer_preset,
)
from divot.diffusion.reference_sampler import reference_ddim_sample
from divot.diffusion.sampling import sample_with_scheduler
from divot.diffusion.schedule import classifier_free_guidance, make_scheduler
from divot.diffusion.unet import VideoUNet

__all__ = [
    "DETOKENIZER_PRESETS",
    "Detokenizer",
    "DetokenizerConfig",
    "detokenizer_preset",
    "ConditionResampler",
    "ConditionResamplerConfig",
    "ScheduleConfig",
    "UNetConfig",
    "VAEConfig",
    "VideoUNet",
    "classifier_free_guidance",
    "condition_preset",
    "make_scheduler",
    "reference_ddim_sample",
    "sample_with_scheduler",
    "unet_preset",
    "vae_preset",
]
