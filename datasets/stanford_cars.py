"""Stanford Cars (196 models); names put the model year first ("2012 Tesla Model S Sedan")."""
import os.path as osp

from toolbox import register_dataset

from .reader import CoOpDataset, SplitItem, split_trainval


def year_first(name: str) -> str:
    """"Tesla Model S Sedan 2012" → "2012 Tesla Model S Sedan" (the names CoOp prompts with)."""
    *words, year = name.split(" ")
    return " ".join([year, *words])


@register_dataset
class StanfordCars(CoOpDataset):
    dataset_dir = "stanford_cars"
    split_name = "split_zhou_StanfordCars.json"
    split_relative_to_dataset_dir = True
    class_count = 196

    def generate_split(self):
        devkit = osp.join(self.dataset_dir, "devkit")
        meta = osp.join(devkit, "cars_meta.mat")
        trainval = self.read_annotations(
            "cars_train", osp.join(devkit, "cars_train_annos.mat"), meta)
        test = self.read_annotations(
            "cars_test", osp.join(self.dataset_dir, "cars_test_annos_withlabels.mat"), meta)
        train, val = split_trainval(trainval)
        return train, val, test

    def read_annotations(self, image_folder: str, annotation_file: str, meta_file: str):
        """Items of a devkit annotation file (MATLAB structs with ``fname`` and 1-based
        ``class``), named through ``cars_meta.mat``'s ``class_names``."""
        from scipy.io import loadmat

        annotations = loadmat(annotation_file)["annotations"][0]
        names = [year_first(str(name[0])) for name in loadmat(meta_file)["class_names"][0]]
        items = []
        for annotation in annotations:
            label = int(annotation["class"][0, 0]) - 1
            impath = osp.join(self.dataset_dir, image_folder, str(annotation["fname"][0]))
            items.append(SplitItem(impath, label, names[label]))
        return items
