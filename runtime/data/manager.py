"""``DataManager``: builds the dataset, its transforms and its loaders from the config."""
import logging
import torch
import torchvision.transforms as T
from tabulate import tabulate
from torch.utils.data import Dataset as TorchDataset

from ..utils import read_image
from .base_dataset import build_dataset
from .samplers import build_sampler
from .transforms import INTERPOLATION_MODES, build_transform

logger = logging.getLogger(__name__)


class DatasetWrapper(TorchDataset):
    """Serves ``Datum`` lists as dicts: ``img``, ``label``, ``domain``, ``impath``, ``index``."""

    def __init__(self, cfg, data_source, transform=None, is_train: bool = False):
        self.cfg = cfg
        self.data_source = data_source
        self.transform = transform
        self.is_train = is_train
        self.k_tfm = cfg.DATALOADER.K_TRANSFORMS if is_train else 1
        self.return_img0 = cfg.DATALOADER.RETURN_IMG0

        if self.k_tfm > 1 and transform is None:
            raise ValueError(f"K_TRANSFORMS={self.k_tfm} needs a transform")

        interp = INTERPOLATION_MODES[cfg.INPUT.INTERPOLATION]
        to_tensor = [T.Resize(cfg.INPUT.SIZE, interpolation=interp), T.ToTensor()]
        if "normalize" in cfg.INPUT.TRANSFORMS:
            to_tensor.append(T.Normalize(mean=cfg.INPUT.PIXEL_MEAN, std=cfg.INPUT.PIXEL_STD))
        self.to_tensor = T.Compose(to_tensor)

    def __len__(self) -> int:
        return len(self.data_source)

    def __getitem__(self, idx: int) -> dict:
        item = self.data_source[idx]
        output = {
            "label": item.label,
            "domain": item.domain,
            "impath": item.impath,
            "index": idx,
        }
        img0 = read_image(item.impath)

        if self.transform is None:
            output["img"] = img0
        elif isinstance(self.transform, (list, tuple)):
            for i, tfm in enumerate(self.transform):
                key = "img" if i == 0 else f"img{i + 1}"
                output[key] = self._transform_image(tfm, img0)
        else:
            output["img"] = self._transform_image(self.transform, img0)

        if self.return_img0:
            output["img0"] = self.to_tensor(img0)
        return output

    def _transform_image(self, tfm, img0):
        images = [tfm(img0) for _ in range(self.k_tfm)]
        return images[0] if len(images) == 1 else images


def build_data_loader(cfg, sampler_type: str = "SequentialSampler", data_source=None,
                      batch_size: int = 64, n_domain: int = 0, n_ins: int = 2, tfm=None,
                      is_train: bool = True, dataset_wrapper=None):
    """A ``DataLoader`` over ``data_source``; training drops the last partial batch."""
    sampler = build_sampler(sampler_type, cfg=cfg, data_source=data_source,
                            batch_size=batch_size, n_domain=n_domain, n_ins=n_ins)
    wrapper = dataset_wrapper or DatasetWrapper
    loader = torch.utils.data.DataLoader(
        wrapper(cfg, data_source, transform=tfm, is_train=is_train),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
        drop_last=is_train and len(data_source) >= batch_size,
        pin_memory=torch.cuda.is_available() and cfg.USE_CUDA,
    )
    if len(loader) == 0:
        raise ValueError("A data loader has no batch: its split is empty")
    return loader


class DataManager:
    """Dataset + transforms + loaders, with the attributes Dassl's trainers read."""

    def __init__(self, cfg, custom_tfm_train=None, custom_tfm_test=None,
                 dataset_wrapper=None):
        dataset = build_dataset(cfg)
        tfm_train = custom_tfm_train or build_transform(cfg, is_train=True)
        tfm_test = custom_tfm_test or build_transform(cfg, is_train=False)

        loader_cfg = cfg.DATALOADER
        self.train_loader_x = build_data_loader(
            cfg, sampler_type=loader_cfg.TRAIN_X.SAMPLER, data_source=dataset.train_x,
            batch_size=loader_cfg.TRAIN_X.BATCH_SIZE, n_domain=loader_cfg.TRAIN_X.N_DOMAIN,
            n_ins=loader_cfg.TRAIN_X.N_INS, tfm=tfm_train, is_train=True,
            dataset_wrapper=dataset_wrapper)

        self.train_loader_u = None
        if dataset.train_u:
            u_cfg = loader_cfg.TRAIN_X if loader_cfg.TRAIN_U.SAME_AS_X else loader_cfg.TRAIN_U
            self.train_loader_u = build_data_loader(
                cfg, sampler_type=u_cfg.SAMPLER, data_source=dataset.train_u,
                batch_size=u_cfg.BATCH_SIZE, n_domain=u_cfg.N_DOMAIN, n_ins=u_cfg.N_INS,
                tfm=tfm_train, is_train=True, dataset_wrapper=dataset_wrapper)

        self.val_loader = None
        if dataset.val:
            self.val_loader = self._test_loader(cfg, dataset.val, tfm_test, dataset_wrapper)
        self.test_loader = self._test_loader(cfg, dataset.test, tfm_test, dataset_wrapper)

        self._num_classes = dataset.num_classes
        self._num_source_domains = len(cfg.DATASET.SOURCE_DOMAINS)
        self._lab2cname = dataset.lab2cname
        self.dataset = dataset
        self.tfm_train = tfm_train
        self.tfm_test = tfm_test

        if cfg.VERBOSE:
            self.show_dataset_summary(cfg)

    @staticmethod
    def _test_loader(cfg, data_source, tfm, dataset_wrapper):
        return build_data_loader(
            cfg, sampler_type=cfg.DATALOADER.TEST.SAMPLER, data_source=data_source,
            batch_size=cfg.DATALOADER.TEST.BATCH_SIZE, tfm=tfm, is_train=False,
            dataset_wrapper=dataset_wrapper)

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @property
    def num_source_domains(self) -> int:
        return self._num_source_domains

    @property
    def lab2cname(self) -> dict:
        return self._lab2cname

    def show_dataset_summary(self, cfg) -> None:
        rows = [["Dataset", cfg.DATASET.NAME]]
        if cfg.DATASET.SOURCE_DOMAINS:
            rows.append(["Source", cfg.DATASET.SOURCE_DOMAINS])
        if cfg.DATASET.TARGET_DOMAINS:
            rows.append(["Target", cfg.DATASET.TARGET_DOMAINS])
        rows.append(["# classes", f"{self.num_classes:,}"])
        rows.append(["# train_x", f"{len(self.dataset.train_x):,}"])
        if self.dataset.train_u:
            rows.append(["# train_u", f"{len(self.dataset.train_u):,}"])
        if self.dataset.val:
            rows.append(["# val", f"{len(self.dataset.val):,}"])
        rows.append(["# test", f"{len(self.dataset.test):,}"])
        logger.info("%s", tabulate(rows))

