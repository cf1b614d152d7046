DEFAULT_CROP_PCT = 0.875
DEFAULT_CROP_MODE = "center"
IMAGENET_DEFAULT_MEAN = (0.485, 0.456, 0.406)
IMAGENET_DEFAULT_STD = (0.229, 0.224, 0.225)


def resolve_data_config(args=None, pretrained_cfg=None, model=None, use_test_size=False, verbose=False):
    assert model or args or pretrained_cfg
    args = args or {}
    pretrained_cfg = pretrained_cfg or {}
    if not pretrained_cfg and model is not None and hasattr(model, "pretrained_cfg"):
        pretrained_cfg = model.pretrained_cfg
    config = {"input_size": tuple(args.get("input_size") or pretrained_cfg.get("input_size") or (3, 224, 224))}
    config["interpolation"] = args.get("interpolation") or pretrained_cfg.get("interpolation") or "bicubic"
    config["mean"] = tuple(args.get("mean") or pretrained_cfg.get("mean") or IMAGENET_DEFAULT_MEAN)
    config["std"] = tuple(args.get("std") or pretrained_cfg.get("std") or IMAGENET_DEFAULT_STD)
    config["crop_pct"] = args.get("crop_pct") or pretrained_cfg.get("crop_pct") or DEFAULT_CROP_PCT
    config["crop_mode"] = args.get("crop_mode") or pretrained_cfg.get("crop_mode") or DEFAULT_CROP_MODE
    return config
