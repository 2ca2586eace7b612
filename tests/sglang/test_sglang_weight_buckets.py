"""The flattened-bucket layout the weight sender broadcasts: SGLang rebuilds each tensor from its byte range."""

import torch

from slime_sglang.weights import flattened_bytes


def test_tensors_back_to_back_as_bytes() -> None:
    tensors = [
        torch.arange(6, dtype=torch.float32).view(2, 3),
        torch.tensor([7.5]),
        torch.ones(2, dtype=torch.bfloat16),
    ]
    flat = flattened_bytes(tensors, torch.device("cpu"))
    assert flat.dtype == torch.uint8 and flat.numel() == 6 * 4 + 4 + 2 * 2
    assert torch.equal(flat[:24].view(torch.float32).view(2, 3), tensors[0])
    assert torch.equal(flat[24:28].view(torch.float32), tensors[1])
    assert torch.equal(flat[28:].view(torch.bfloat16), tensors[2])


def test_misaligned_tensor_means_no_flat_bucket() -> None:
    # An fp32 tensor after 3 bf16 elements would start at byte 6: SGLang refuses it, so the sender goes tensor by tensor.
    assert flattened_bytes([torch.ones(3, dtype=torch.bfloat16), torch.ones(2)], torch.device("cpu")) is None
