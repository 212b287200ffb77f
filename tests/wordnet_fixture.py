"""Writes a small WordNet 3.0-format database (the files NLTK's reader needs) for tests."""
import os
import os.path as osp
from typing import Dict, List

HEADER = "  1 This is a WordNet-format database written for tests.  \n"

# Noun synsets: lemma lists, first lemma first (the label DOR uses).
NOUN_SYNSETS: List[List[str]] = [
    ["dog", "domestic_dog", "Canis_familiaris"],
    ["cat", "true_cat"],
    ["car", "auto", "automobile", "machine", "motorcar"],
    ["apple"],
    ["chair"],
    ["guitar"],
    ["wolf"],
    ["fox"],
    ["truck", "motortruck"],
    ["pear"],
    ["stool"],
    ["violin", "fiddle"],
    ["frump", "dog"],
    ["goose"],
    ["Golden_Retriever"],
    ["lamp"],
    ["bicycle", "bike", "wheel", "cycle"],
    ["dog"],
    ["tree"],
    ["house"],
]
NOUN_EXCEPTIONS = {"geese": ["goose"], "oxen": ["ox"]}


def _write_data(path: str, synsets: List[List[str]]) -> List[int]:
    """Write a data file whose synset offsets are their byte offsets, as WordNet requires."""
    offsets, lines, position = [], [HEADER], len(HEADER.encode())
    for lemmas in synsets:
        words = " ".join(f"{lemma} 0" for lemma in lemmas)
        line = f"{position:08d} 05 n {len(lemmas):02x} {words} 000 | a test gloss  \n"
        offsets.append(position)
        lines.append(line)
        position += len(line.encode())
    with open(path, "w") as f:
        f.writelines(lines)
    return offsets


def _write_sense_index(path: str, synsets: List[List[str]], offsets: List[int]) -> None:
    """index.sense: NLTK maps synsets between WordNet versions through it."""
    keys = sorted(f"{lemma.lower()}%1:05:{i:02d}:: {offset:08d} 1 0\n"
                  for i, (lemmas, offset) in enumerate(zip(synsets, offsets)) for lemma in lemmas)
    with open(path, "w") as f:
        f.writelines(keys)


def _write_index(path: str, synsets: List[List[str]], offsets: List[int]) -> None:
    senses: Dict[str, List[int]] = {}
    for lemmas, offset in zip(synsets, offsets):
        for lemma in lemmas:
            senses.setdefault(lemma.lower(), []).append(offset)
    lines = [HEADER] + [
        f"{lemma} n {len(offs)} 0 {len(offs)} 0 " + " ".join(f"{o:08d}" for o in offs) + "  \n"
        for lemma, offs in sorted(senses.items())
    ]
    with open(path, "w") as f:
        f.writelines(lines)


def write_wordnet(data_root: str) -> str:
    """Create the database as NLTK data (``<data_root>/corpora/wordnet``) and return its folder.

    NLTK's reader only opens folders under its data path, and looks up the corpus named
    "wordnet" there to map synsets between versions, hence the layout.
    """
    directory = osp.join(data_root, "corpora", "wordnet")
    os.makedirs(directory)
    offsets = _write_data(osp.join(directory, "data.noun"), NOUN_SYNSETS)
    _write_index(osp.join(directory, "index.noun"), NOUN_SYNSETS, offsets)
    _write_sense_index(osp.join(directory, "index.sense"), NOUN_SYNSETS, offsets)
    with open(osp.join(directory, "noun.exc"), "w") as f:
        f.writelines(f"{form} {' '.join(bases)}\n" for form, bases in NOUN_EXCEPTIONS.items())
    for pos in ("verb", "adj", "adv"):
        for name in (f"data.{pos}", f"index.{pos}"):
            with open(osp.join(directory, name), "w") as f:
                f.write(HEADER)
        open(osp.join(directory, f"{pos}.exc"), "w").close()
    lexnames = ["adj.all 3", "adj.pert 3", "adv.all 4", "noun.Tops 1", "noun.act 1",
                "noun.animal 1"]
    with open(osp.join(directory, "lexnames"), "w") as f:
        f.writelines(f"{i:02d}\t{name.replace(' ', chr(9))}\n" for i, name in enumerate(lexnames))
    return directory
