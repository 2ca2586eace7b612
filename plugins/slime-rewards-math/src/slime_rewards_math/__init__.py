"""Math answer rewards for slime: deepscaler, dapo, math (boxed answers, symbolic equivalence)"""
