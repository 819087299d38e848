"""Faults that `mypy src` pointed at (issue 18, section 5), each with PyTorch's answer as the oracle."""
import numpy as np
import pytest

import chainrule as cr

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("requires_grad", [True, False])
def test_astype_none_leaves_the_tensor_as_it_is_as_torch_to_none(requires_grad):
    # before: AttributeError ('NoneType' has no attribute 'kind') with requires_grad, else a float64 copy
    x = cr.ones(2, requires_grad=requires_grad)
    reference = torch.ones(2, requires_grad=requires_grad)
    assert reference.to(None) is reference
    converted = cr.astype(x, None)
    assert converted is x and converted.dtype == np.float32
