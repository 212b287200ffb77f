"""Outlier vocabularies: WordNet nouns (one label per noun synset) or a text file of labels.

WordNet is read through NLTK's corpus reader when NLTK's WordNet data is installed, and
otherwise straight from the WordNet database files (``data.noun``, ``index.noun``,
``noun.exc``), e.g. the ones Debian's ``wordnet-base`` package puts in /usr/share/wordnet,
which NLTK's reader refuses because that folder has no ``lexnames`` file. Both readers give the
same labels, in the same (database file) order, and the same synonyms.
"""
import functools
import hashlib
import logging
import os
import os.path as osp
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Set

logger = logging.getLogger(__name__)

DEBIAN_WORDNET_DIR = "/usr/share/wordnet"
INSTALL_HINT = ("install WordNet with `apt-get install wordnet-base` (database files in "
                "/usr/share/wordnet) or `python -m nltk.downloader wordnet` (NLTK's corpus), "
                "or point TRAINER.DOR.WORDNET_DIR at a WordNet database folder")

# WordNet's morphological rules for nouns (the ``morphy`` algorithm of the WordNet library).
NOUN_SUFFIX_RULES = [("s", ""), ("ses", "s"), ("ves", "f"), ("xes", "x"), ("zes", "z"),
                     ("ches", "ch"), ("shes", "sh"), ("men", "man"), ("ies", "y")]


class VocabularyError(RuntimeError):
    """No usable outlier vocabulary."""


def normalise_label(label: str) -> str:
    """Underscores read as spaces and runs of whitespace collapsed."""
    return " ".join(label.replace("_", " ").split())


def comparison_key(label: str) -> str:
    """How labels are compared (for de-duplication and exclusion): normalised, lower case."""
    return normalise_label(label).lower()


def unique_labels(labels: Iterable[str]) -> List[str]:
    """Normalised labels, first spelling kept, duplicates (by comparison key) and blanks dropped."""
    seen: Set[str] = set()
    result = []
    for label in labels:
        label = normalise_label(label)
        key = label.lower()
        if label and key not in seen:
            seen.add(key)
            result.append(label)
    return result


class WordNetDatabase:
    """Reads the noun part of a WordNet 3.x database folder without NLTK."""

    def __init__(self, directory: str):
        self.directory = directory
        for name in ("data.noun", "index.noun"):
            if not osp.isfile(osp.join(directory, name)):
                raise VocabularyError(f'"{directory}" is not a WordNet database folder '
                                      f"({name} is missing); {INSTALL_HINT}")
        self._synset_lemmas: Dict[str, List[str]] = {}
        self._order: List[str] = []
        self._read_data()
        self._index = self._read_index()
        self._exceptions = self._read_exceptions()

    @staticmethod
    def _content_lines(path: str):
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line and not line.startswith(" "):  # the licence header is indented
                    yield line

    def _read_data(self) -> None:
        for line in self._content_lines(osp.join(self.directory, "data.noun")):
            fields = line.split()
            offset, word_count = fields[0], int(fields[3], 16)
            self._synset_lemmas[offset] = [fields[4 + 2 * i] for i in range(word_count)]
            self._order.append(offset)

    def _read_index(self) -> Dict[str, List[str]]:
        index = {}
        for line in self._content_lines(osp.join(self.directory, "index.noun")):
            fields = line.split()
            synset_count, pointer_count = int(fields[2]), int(fields[3])
            offsets_start = 4 + pointer_count + 2
            index[fields[0]] = fields[offsets_start:offsets_start + synset_count]
        return index

    def _read_exceptions(self) -> Dict[str, List[str]]:
        path = osp.join(self.directory, "noun.exc")
        if not osp.isfile(path):
            return {}
        exceptions = {}
        for line in self._content_lines(path):
            terms = line.split()
            if terms:
                exceptions[terms[0]] = terms[1:]
        return exceptions

    def noun_labels(self) -> List[str]:
        """The first lemma of every noun synset, in database order."""
        return [self._synset_lemmas[offset][0] for offset in self._order]

    def _base_forms(self, form: str) -> List[str]:
        """WordNet's morphy for nouns: the form itself, then exception or suffix-rule stems."""
        if form in self._exceptions:
            candidates = self._exceptions[form]
        else:
            candidates = [form[:-len(old)] + new for old, new in NOUN_SUFFIX_RULES
                          if form.endswith(old)]
        result = []
        for candidate in [form] + candidates:
            if candidate in self._index and candidate not in result:
                result.append(candidate)
        return result

    def noun_synonyms(self, name: str) -> Set[str]:
        """Every lemma of every noun sense of ``name`` (normalised)."""
        form = name.strip().lower().replace(" ", "_")
        return {normalise_label(lemma) for base in self._base_forms(form)
                for offset in self._index[base] for lemma in self._synset_lemmas[offset]}


class NLTKWordNet:
    """The same interface over NLTK's WordNet corpus reader."""

    def __init__(self, reader):
        self.reader = reader

    def noun_labels(self) -> List[str]:
        return [synset.lemmas()[0].name() for synset in self.reader.all_synsets("n")]

    def noun_synonyms(self, name: str) -> Set[str]:
        synsets = self.reader.synsets(name.strip().replace(" ", "_"), pos="n")
        return {normalise_label(lemma.name()) for synset in synsets for lemma in synset.lemmas()}


def _nltk_wordnet():
    """NLTK's WordNet reader if NLTK and its WordNet data are installed, else None."""
    try:
        import nltk
        from nltk.corpus import wordnet

        nltk.data.find("corpora/wordnet")
        wordnet.ensure_loaded()
        return NLTKWordNet(wordnet)
    except (ImportError, LookupError, OSError):
        return None


def _database_dirs() -> List[str]:
    """Where WordNet database files are looked for when NLTK's corpus is not installed."""
    dirs = []
    try:
        import nltk

        dirs += [osp.join(path, "corpora", "wordnet") for path in nltk.data.path]
    except ImportError:
        pass
    return dirs + [DEBIAN_WORDNET_DIR]


@functools.lru_cache(maxsize=4)
def open_wordnet(directory: str = ""):
    """WordNet from ``directory`` if given, else NLTK's corpus, else the first database folder."""
    if directory:
        return WordNetDatabase(directory)
    nltk_wordnet = _nltk_wordnet()
    if nltk_wordnet is not None:
        logger.info("Reading WordNet through NLTK")
        return nltk_wordnet
    for candidate in _database_dirs():
        if osp.isfile(osp.join(candidate, "data.noun")):
            logger.info("Reading WordNet database files from %s", candidate)
            return WordNetDatabase(candidate)
    raise VocabularyError(f"WordNet is not available: {INSTALL_HINT}")


@dataclass
class Vocabulary:
    """De-duplicated outlier labels, where they came from, and a hash of their content."""

    labels: List[str]
    source: str
    wordnet: Optional[object] = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256("\n".join(self.labels).encode("utf-8")).hexdigest()

    def synonyms(self, names: Sequence[str]) -> Set[str]:
        """WordNet synonyms (comparison keys) of ``names``; empty without WordNet."""
        if self.wordnet is None:
            return set()
        return {comparison_key(s) for name in names for s in self.wordnet.noun_synonyms(name)}


def read_label_file(path: str) -> List[str]:
    """Labels of a text file, one per line; blank lines and lines starting with # skipped."""
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip() and not line.startswith("#")]


def load_vocabulary(source: str = "wordnet", wordnet_dir: str = "") -> Vocabulary:
    """The vocabulary named by ``TRAINER.DOR.VOCAB``: ``wordnet`` or a label file path.

    With a label file, WordNet is still used for synonym exclusion when it is available.
    """
    if source == "wordnet":
        wordnet = open_wordnet(wordnet_dir)
        return Vocabulary(unique_labels(wordnet.noun_labels()), "wordnet", wordnet)

    if not osp.isfile(source):
        raise VocabularyError(f'TRAINER.DOR.VOCAB must be "wordnet" or a label file; "{source}" '
                              "is not a file")
    labels = unique_labels(read_label_file(source))
    if not labels:
        raise VocabularyError(f'Label file "{source}" holds no label')
    try:
        wordnet = open_wordnet(wordnet_dir)
    except VocabularyError:
        logger.info("WordNet not found: only exact base-class names are excluded")
        wordnet = None
    return Vocabulary(labels, os.path.abspath(source), wordnet)
