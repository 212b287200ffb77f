"""Hand-written prompt templates per dataset, as used by zero-shot CLIP and the CoOp family."""
from typing import Dict, List

# The single template zero-shot CLIP uses for each dataset in CoOp's evaluation.
ZEROSHOT_TEMPLATES: Dict[str, str] = {
    "OxfordPets": "a photo of a {}, a type of pet.",
    "OxfordFlowers": "a photo of a {}, a type of flower.",
    "FGVCAircraft": "a photo of a {}, a type of aircraft.",
    "DescribableTextures": "{} texture.",
    "EuroSAT": "a centered satellite photo of {}.",
    "StanfordCars": "a photo of a {}.",
    "Food101": "a photo of {}, a type of food.",
    "SUN397": "a photo of a {}.",
    "Caltech101": "a photo of a {}.",
    "UCF101": "a photo of a person doing {}.",
    "ImageNet": "a photo of a {}.",
    "ImageNetSketch": "a photo of a {}.",
    "ImageNetV2": "a photo of a {}.",
    "ImageNetA": "a photo of a {}.",
    "ImageNetR": "a photo of a {}.",
}

# KgCoOp anchors its prompts to these (TCP too, except two datasets: see trainers/tcp.py);
# they differ from the zero-shot set for DTD only.
KNOWLEDGE_TEMPLATES: Dict[str, str] = dict(
    ZEROSHOT_TEMPLATES, DescribableTextures="a photo of a {}, a type of texture.")

DEFAULT_TEMPLATE = "a photo of a {}."

# The seven ImageNet templates CLIP's authors selected for prompt ensembling.
IMAGENET_SELECTED_TEMPLATES: List[str] = [
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
]


def zeroshot_template(dataset_name: str) -> str:
    """The dataset's zero-shot template, or "a photo of a {}." for datasets not listed."""
    return ZEROSHOT_TEMPLATES.get(dataset_name, DEFAULT_TEMPLATE)


def knowledge_template(dataset_name: str) -> str:
    """The hand-crafted template KgCoOp-style regularisers compare against."""
    return KNOWLEDGE_TEMPLATES.get(dataset_name, DEFAULT_TEMPLATE)


def fill(template: str, classname: str) -> str:
    """Insert a class name (underscores read as spaces) into a template."""
    return template.format(classname.replace("_", " "))
