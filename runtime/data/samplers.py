"""Training samplers selected by name (``DATALOADER.*.SAMPLER``), as in Dassl."""
import copy
import random
from collections import defaultdict

from torch.utils.data.sampler import RandomSampler, Sampler, SequentialSampler


def _indices_by(data_source, key: str):
    groups = defaultdict(list)
    for index, item in enumerate(data_source):
        groups[getattr(item, key)].append(index)
    return groups


class RandomDomainSampler(Sampler):
    """Each batch takes ``batch_size // n_domain`` images from each of ``n_domain`` domains."""

    def __init__(self, data_source, batch_size: int, n_domain: int):
        self.domain_dict = _indices_by(data_source, "domain")
        self.domains = list(self.domain_dict)
        if n_domain is None or n_domain <= 0:
            n_domain = len(self.domains)
        if batch_size % n_domain != 0:
            raise ValueError("batch_size must be divisible by the number of domains per batch")
        self.n_img_per_domain = batch_size // n_domain
        self.n_domain = n_domain
        self.length = len(list(self.__iter__()))

    def __iter__(self):
        domain_dict = copy.deepcopy(self.domain_dict)
        final_idxs = []
        while True:
            selected = random.sample(self.domains, self.n_domain)
            for domain in selected:
                final_idxs.extend(random.sample(domain_dict[domain], self.n_img_per_domain))
                for idx in final_idxs[-self.n_img_per_domain:]:
                    domain_dict[domain].remove(idx)
                if len(domain_dict[domain]) < self.n_img_per_domain:
                    return iter(final_idxs)

    def __len__(self) -> int:
        return self.length


class SeqDomainSampler(Sampler):
    """Each batch holds ``batch_size // n_domains`` images of every domain, domains in order."""

    def __init__(self, data_source, batch_size: int):
        self.domain_dict = _indices_by(data_source, "domain")
        self.domains = sorted(self.domain_dict)
        if batch_size % len(self.domains) != 0:
            raise ValueError("batch_size must be divisible by the number of domains")
        self.n_img_per_domain = batch_size // len(self.domains)
        self.length = len(list(self.__iter__()))

    def __iter__(self):
        domain_dict = copy.deepcopy(self.domain_dict)
        final_idxs = []
        while True:
            for domain in self.domains:
                final_idxs.extend(random.sample(domain_dict[domain], self.n_img_per_domain))
                for idx in final_idxs[-self.n_img_per_domain:]:
                    domain_dict[domain].remove(idx)
                if len(domain_dict[domain]) < self.n_img_per_domain:
                    return iter(final_idxs)

    def __len__(self) -> int:
        return self.length


class RandomClassSampler(Sampler):
    """Each batch holds ``batch_size // n_ins`` classes with ``n_ins`` images each."""

    def __init__(self, data_source, batch_size: int, n_ins: int):
        if batch_size < n_ins:
            raise ValueError(f"batch_size={batch_size} must be at least n_ins={n_ins}")
        self.index_dic = _indices_by(data_source, "label")
        self.labels = list(self.index_dic)
        self.n_ins = n_ins
        self.ncls_per_batch = batch_size // n_ins
        self.length = sum(len(v) - len(v) % n_ins if len(v) >= n_ins else n_ins
                          for v in self.index_dic.values())

    def __iter__(self):
        batch_idxs_dict = defaultdict(list)
        for label in self.labels:
            idxs = copy.deepcopy(self.index_dic[label])
            if len(idxs) < self.n_ins:
                idxs = random.choices(idxs, k=self.n_ins)
            random.shuffle(idxs)
            batch = []
            for idx in idxs:
                batch.append(idx)
                if len(batch) == self.n_ins:
                    batch_idxs_dict[label].append(batch)
                    batch = []

        avai_labels = copy.deepcopy(self.labels)
        final_idxs = []
        while len(avai_labels) >= self.ncls_per_batch:
            for label in random.sample(avai_labels, self.ncls_per_batch):
                final_idxs.extend(batch_idxs_dict[label].pop(0))
                if not batch_idxs_dict[label]:
                    avai_labels.remove(label)
        return iter(final_idxs)

    def __len__(self) -> int:
        return self.length


def build_sampler(sampler_type: str, cfg=None, data_source=None, batch_size: int = 32,
                  n_domain: int = 0, n_ins: int = 16) -> Sampler:
    """Return the sampler named ``sampler_type`` over ``data_source``."""
    if sampler_type == "RandomSampler":
        return RandomSampler(data_source)
    if sampler_type == "SequentialSampler":
        return SequentialSampler(data_source)
    if sampler_type == "RandomDomainSampler":
        return RandomDomainSampler(data_source, batch_size, n_domain)
    if sampler_type == "SeqDomainSampler":
        return SeqDomainSampler(data_source, batch_size)
    if sampler_type == "RandomClassSampler":
        return RandomClassSampler(data_source, batch_size, n_ins)
    raise ValueError(f'Unknown sampler "{sampler_type}"')
