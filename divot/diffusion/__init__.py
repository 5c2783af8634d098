"""De-tokenizer parts: the 3D U-Net, the condition resampler, the schedule, the samplers and the VAE glue.

Names are imported on first use (``divot._lazy_exports``): the configs and presets need neither torch nor
diffusers.
"""

from typing import TYPE_CHECKING

from divot import _lazy_exports

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

__getattr__, __dir__ = _lazy_exports(globals(), {
    "ConditionResampler": "divot.diffusion.condition",
    **dict.fromkeys(["ConditionResamplerConfig", "ScheduleConfig", "UNetConfig", "VAEConfig", "condition_preset",
                     "unet_preset", "vae_preset"], "divot.diffusion.config"),
    **dict.fromkeys(["DETOKENIZER_PRESETS", "Detokenizer", "DetokenizerConfig", "detokenizer_preset"],
                    "divot.diffusion.detokenizer"),
    "reference_ddim_sample": "divot.diffusion.reference_sampler",
    "sample_with_scheduler": "divot.diffusion.sampling",
    "classifier_free_guidance": "divot.diffusion.schedule",
    "make_scheduler": "divot.diffusion.schedule",
    "VideoUNet": "divot.diffusion.unet",
})

if TYPE_CHECKING:
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
