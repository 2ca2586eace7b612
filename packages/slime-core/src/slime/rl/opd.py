"""On-policy distillation (``--use-opd``, ``--opd-kl-coef``): the student learns from a teacher's log-probs of the
student's own samples.

slime's ``apply_opd_kl_to_advantages`` (after tinker-cookbook's on-policy distillation): per token, the sampled
reverse KL ``log pi_student - log pi_teacher`` (k1 of KL(student || teacher) on the student's samples) is subtracted,
times ``--opd-kl-coef``, from whatever advantages the estimator produced, before whitening. With zero task reward
the policy gradient is then the reverse-KL gradient; with a reward the two add up. The estimator is unchanged, so
OPD goes with any of them.
"""

import torch


def reverse_kl(student_log_probs: torch.Tensor, teacher_log_probs: torch.Tensor) -> torch.Tensor:
    """Per-token ``log pi_student - log pi_teacher`` of the sampled tokens (slime logs it as ``opd_reverse_kl``)."""
    return student_log_probs - teacher_log_probs.to(student_log_probs.device, student_log_probs.dtype)


def apply_opd_kl(
    advantages: list[torch.Tensor],
    student_log_probs: list[torch.Tensor],
    teacher_log_probs: list[torch.Tensor],
    kl_coef: float,
) -> list[torch.Tensor]:
    """Each sample's advantages minus ``kl_coef`` times its per-token reverse KL to the teacher."""
    return [
        advantage - kl_coef * reverse_kl(student, teacher)
        for advantage, student, teacher in zip(advantages, student_log_probs, teacher_log_probs, strict=True)
    ]
