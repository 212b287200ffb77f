"""``Datum`` and ``DatasetBase``: the data model every Dassl dataset reader produces."""
import logging
import os.path as osp
import random
from collections import defaultdict
from typing import Dict, List, Sequence, Tuple

from ..registry import Registry, check_availability

logger = logging.getLogger(__name__)


class Datum:
    """One labelled image: path, label, domain and class name (read-only).

    The attribute names match Dassl's, so pickled few-shot caches written by either runtime
    restore into the other's class.
    """

    def __init__(self, impath: str = "", label: int = 0, domain: int = 0, classname: str = ""):
        if not isinstance(impath, str):
            raise TypeError(f"Datum.impath must be a str, got {type(impath).__name__}")
        if not osp.isfile(impath):
            raise FileNotFoundError(f'Image file not found: "{impath}"')
        self._impath = impath
        self._label = label
        self._domain = domain
        self._classname = classname

    @property
    def impath(self) -> str:
        return self._impath

    @property
    def label(self) -> int:
        return self._label

    @property
    def domain(self) -> int:
        return self._domain

    @property
    def classname(self) -> str:
        return self._classname

    def __repr__(self) -> str:
        return f"Datum({self._impath!r}, label={self._label}, classname={self._classname!r})"


class DatasetBase:
    """Holds the train/val/test lists of a dataset and derives its label space from train_x."""

    dataset_dir = ""
    domains: List[str] = []

    def __init__(self, train_x=None, train_u=None, val=None, test=None):
        self._train_x = train_x
        self._train_u = train_u
        self._val = val
        self._test = test
        self._num_classes = self.get_num_classes(train_x)
        self._lab2cname, self._classnames = self.get_lab2cname(train_x)
        missing = sorted(set(range(self._num_classes)) - set(self._lab2cname))
        if missing:
            raise ValueError(
                f"Labels {missing[:10]} have no training sample, so the label space "
                f"0..{self._num_classes - 1} would have holes; check the split file "
                "or the number of shots."
            )

    @property
    def train_x(self):
        return self._train_x

    @property
    def train_u(self):
        return self._train_u

    @property
    def val(self):
        return self._val

    @property
    def test(self):
        return self._test

    @property
    def lab2cname(self) -> Dict[int, str]:
        return self._lab2cname

    @property
    def classnames(self) -> List[str]:
        return self._classnames

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @staticmethod
    def get_num_classes(data_source: Sequence[Datum]) -> int:
        """Number of classes, defined as in Dassl: the largest label plus one."""
        return max(item.label for item in data_source) + 1

    @staticmethod
    def get_lab2cname(data_source: Sequence[Datum]) -> Tuple[Dict[int, str], List[str]]:
        """Label→class-name mapping and the class names ordered by label."""
        mapping = {item.label: item.classname for item in data_source}
        labels = sorted(mapping)
        return {label: mapping[label] for label in labels}, [mapping[label] for label in labels]

    def check_input_domains(self, source_domains, target_domains) -> None:
        self.is_input_domain_valid(source_domains)
        self.is_input_domain_valid(target_domains)

    def is_input_domain_valid(self, input_domains) -> None:
        for domain in input_domains:
            if domain not in self.domains:
                raise ValueError(f'Domain "{domain}" is not one of {self.domains}')

    def generate_fewshot_dataset(self, *data_sources, num_shots: int = -1, repeat: bool = False):
        """Sample ``num_shots`` items per label from each list, as Dassl does.

        Labels are visited in first-seen order and sampled with Python's global ``random``
        (``random.sample``, or ``random.choices`` when ``repeat`` and a class is short), so
        the same seed yields the same few-shot lists as Dassl.
        """
        if num_shots < 1:
            return data_sources[0] if len(data_sources) == 1 else data_sources

        logger.info("Creating a %d-shot dataset", num_shots)
        output = []
        for data_source in data_sources:
            dataset = []
            for items in self.split_dataset_by_label(data_source).values():
                if len(items) >= num_shots:
                    dataset.extend(random.sample(items, num_shots))
                elif repeat:
                    dataset.extend(random.choices(items, k=num_shots))
                else:
                    dataset.extend(items)
            output.append(dataset)
        return output[0] if len(output) == 1 else output

    @staticmethod
    def split_dataset_by_label(data_source: Sequence[Datum]) -> Dict[int, List[Datum]]:
        output = defaultdict(list)
        for item in data_source:
            output[item.label].append(item)
        return output

    @staticmethod
    def split_dataset_by_domain(data_source: Sequence[Datum]) -> Dict[int, List[Datum]]:
        output = defaultdict(list)
        for item in data_source:
            output[item.domain].append(item)
        return output

    def download_data(self, url: str, dst: str, from_gdrive: bool = True) -> None:
        """Fetch ``url`` to ``dst`` with gdown (the only download helper Dassl readers use)."""
        import gdown

        if not from_gdrive:
            raise ValueError("Only Google Drive downloads are supported")
        gdown.download(url, dst, quiet=False)


DATASET_REGISTRY = Registry("DATASET")


def build_dataset(cfg) -> DatasetBase:
    """Instantiate the reader registered under ``cfg.DATASET.NAME``."""
    check_availability(cfg.DATASET.NAME, DATASET_REGISTRY.registered_names())
    logger.info("Loading dataset: %s", cfg.DATASET.NAME)
    return DATASET_REGISTRY.get(cfg.DATASET.NAME)(cfg)
