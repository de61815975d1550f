"""torchvision's ResNet family constructors, in torchvision's words:

    m = strata.models.resnet18()                                # torchvision-style init, seed 0
    m = strata.models.resnet50(weights="resnet50-0676ba61.pth")  # a torchvision weight file
    m = strata.models.resnet50(replace_stride_with_dilation=[False, True, True])  # DeepLabV3's

`weights` is a path (.pth or .safetensors; strata downloads nothing), loaded strictly and
without a copy (the parameters share the mapped file). Keyword arguments as torchvision's:
num_classes, groups, width_per_group, replace_stride_with_dilation; strata's own: seed (of the
torchvision-style initialisation) and init ('torchvision', or 'none' to leave the parameters at
zero for a load that follows).
"""
from . import _core, _strata

_NAMES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
          "resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d",
          "wide_resnet50_2", "wide_resnet101_2")

__all__ = ["ResNet", "create", "list_models"] + list(_NAMES)

ResNet = _core.ResNet


def list_models():
    """The names this build has, as torchvision.models.list_models() spells them."""
    return list(_strata.model_names())


def create(name, *, weights=None, progress=True, num_classes=1000, groups=None, width_per_group=None,
           replace_stride_with_dilation=None, seed=0, init="torchvision"):
    """The model named `name` (see list_models()); the named constructors call this."""
    del progress  # torchvision's download progress bar: strata downloads nothing
    if init not in ("torchvision", "none"):
        raise ValueError("init=%r: expected 'torchvision' or 'none'" % (init,))
    dilation = [False, False, False] if replace_stride_with_dilation is None else \
        [bool(v) for v in replace_stride_with_dilation]
    if len(dilation) != 3:
        raise ValueError("replace_stride_with_dilation should be None or a 3-element tuple, got %r"
                         % (replace_stride_with_dilation,))
    m = _strata.Model(str(name), int(num_classes), int(groups or 0), int(width_per_group or 0),
                      dilation, int(seed), init == "torchvision" and weights is None)
    model = _core.ResNet(m)
    if weights is not None:
        _core.load(weights, into=model)
    return model


def _constructor(name):
    def make(*, weights=None, progress=True, **kwargs):
        return create(name, weights=weights, progress=progress, **kwargs)
    make.__name__ = make.__qualname__ = name
    make.__doc__ = "torchvision.models.%s, in strata: see strata.models for the arguments." % name
    return make


for _name in _NAMES:
    globals()[_name] = _constructor(_name)
del _name
