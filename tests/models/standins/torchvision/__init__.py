from torchvision import models, transforms
