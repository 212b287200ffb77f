"""UCF101 (101 actions), one middle frame per video as in CoOp's ``UCF-101-midframes``."""
import os.path as osp
import re
from typing import Dict

from toolbox import register_dataset

from .reader import CoOpDataset, DatasetError, SplitItem, read_lines, split_trainval


def action_words(action: str) -> str:
    """"ApplyEyeMakeup" → "Apply_Eye_Makeup": the frames' folder name and the class name."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", action)


@register_dataset
class UCF101(CoOpDataset):
    dataset_dir = "ucf101"
    image_dir = "UCF-101-midframes"
    split_name = "split_zhou_UCF101.json"
    class_count = 101

    def generate_split(self):
        """Labels from ``classInd.txt`` (1-based); train/val from the first official training
        list (80/20), test from the first testing list."""
        lists = osp.join(self.dataset_dir, "ucfTrainTestlist")
        label_of = {}
        for line in read_lines(osp.join(lists, "classInd.txt")):
            index, action = line.split()
            label_of[action] = int(index) - 1
        trainval = self.read_list(osp.join(lists, "trainlist01.txt"), label_of)
        test = self.read_list(osp.join(lists, "testlist01.txt"), label_of)
        train, val = split_trainval(trainval)
        return train, val, test

    def read_list(self, list_file: str, label_of: Dict[str, int]):
        """Lines are ``<Action>/<video>.avi`` (a label may follow); the frame is ``.jpg``."""
        items = []
        for line in read_lines(list_file):
            action, video = line.split()[0].split("/")
            if action not in label_of:
                raise DatasetError(f'"{list_file}" names the action "{action}", which is not '
                                   "in classInd.txt")
            frame = osp.splitext(video)[0] + ".jpg"
            words = action_words(action)
            items.append(SplitItem(osp.join(self.image_dir, words, frame), label_of[action],
                                   words))
        return items
