"""Oxford-IIIT Pets (37 breeds); class names are the lower-cased breed prefixes of file names."""
import os.path as osp

from toolbox import register_dataset

from .reader import CoOpDataset, SplitItem, read_lines, split_trainval


@register_dataset
class OxfordPets(CoOpDataset):
    dataset_dir = "oxford_pets"
    image_dir = "images"
    split_name = "split_zhou_OxfordPets.json"
    class_count = 37

    def generate_split(self):
        trainval = self.read_annotations("trainval.txt")
        test = self.read_annotations("test.txt")
        train, val = split_trainval(trainval)
        return train, val, test

    def read_annotations(self, split_file: str):
        """Items of ``annotations/<split_file>`` (lines: name, class id, species, breed id)."""
        items = []
        for line in read_lines(osp.join(self.dataset_dir, "annotations", split_file)):
            if line.startswith("#"):
                continue
            imname, label = line.split()[:2]
            breed = "_".join(imname.split("_")[:-1]).lower()
            items.append(SplitItem(osp.join(self.image_dir, imname + ".jpg"), int(label) - 1,
                                   breed))
        return items
