from timm import data, models
from timm.models import create_model, is_model
