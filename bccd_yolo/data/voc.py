"""Read a Pascal-VOC folder: split lists, XML annotations and the images they describe."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from ..core.errors import InputError
from ..core.images import IMAGE_SUFFIXES, read_image_size

SAFE_PARSER = etree.XMLParser(resolve_entities=False, no_network=True)  # no external entities, no network


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in pixels, with its class name."""

    name: str
    x1: float
    y1: float
    x2: float
    y2: float

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1


@dataclass(frozen=True)
class Defect:
    """Something wrong in the source data that conversion repaired or dropped."""

    file: str
    object: int | None
    problem: str
    action: str


@dataclass
class ImageAnnotation:
    """One image, its true pixel size, and its kept boxes."""

    image_id: str
    image_path: Path
    width: int
    height: int
    boxes: list[Box] = field(default_factory=list)


@dataclass(frozen=True)
class VocLayout:
    """Where the parts of a VOC folder live."""

    root: Path

    @property
    def annotations(self) -> Path:
        return self.root / "Annotations"

    @property
    def images(self) -> Path:
        return self.root / "JPEGImages"

    @property
    def splits(self) -> Path:
        return self.root / "ImageSets" / "Main"

    @classmethod
    def find(cls, source: Path) -> "VocLayout":
        """Accept the VOC folder itself or a checkout holding exactly one (BCCD_Dataset/BCCD)."""
        source = Path(source)
        if not source.is_dir():
            raise InputError(source, "source folder does not exist")
        if (source / "Annotations").is_dir():
            return cls(source)
        inner = [p.parent for p in sorted(source.glob("*/Annotations")) if p.is_dir()]
        if len(inner) == 1:
            return cls(inner[0])
        raise InputError(source, "not a Pascal-VOC folder (no Annotations/ inside, nor one level down)")


def read_split_list(path: Path) -> list[str]:
    """Image ids of one ImageSets/Main/<split>.txt, in file order."""
    if not path.is_file():
        raise InputError(path, "split list is missing")
    ids = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise InputError(path, "split list is empty")
    return ids


def find_image(layout: VocLayout, image_id: str, filename: str | None) -> Path:
    """The image for an annotation: by id with any image suffix, else by the XML's <filename>."""
    for suffix in IMAGE_SUFFIXES:
        for candidate in (image_id + suffix, image_id + suffix.upper()):
            path = layout.images / candidate
            if path.is_file():
                return path
    if filename and (layout.images / filename).is_file():
        return layout.images / filename
    raise InputError(layout.images / f"{image_id}.jpg", "image is missing")


def _number(obj: etree._Element, tag: str, xml_path: Path, index: int) -> float:
    node = obj.find(f"bndbox/{tag}")
    if node is None or node.text is None:
        raise InputError(xml_path, f"object {index} has no <bndbox>/<{tag}>")
    try:
        return float(node.text.strip())
    except ValueError:
        raise InputError(xml_path, f"object {index} has a non-numeric <{tag}>: {node.text.strip()!r}") from None


def _declared_size(root: etree._Element) -> tuple[int, int] | None:
    width, height = root.findtext("size/width"), root.findtext("size/height")
    try:
        return (int(width), int(height)) if width is not None and height is not None else None
    except ValueError:
        return None


def parse_annotation(
    xml_path: Path, layout: VocLayout, class_of: dict[str, str] | None
) -> tuple[ImageAnnotation, list[Defect]]:
    """Parse one XML file against its image.

    `class_of` maps a stripped XML name to a class name; None accepts every name as it is.
    Boxes are clipped to the image; empty boxes are dropped; both are returned as defects.
    """
    if not xml_path.is_file():
        raise InputError(xml_path, "annotation is missing")
    try:
        root = etree.parse(str(xml_path), SAFE_PARSER).getroot()
    except etree.XMLSyntaxError as e:
        raise InputError(xml_path, f"malformed XML ({e.msg})") from None
    image_id = xml_path.stem
    image_path = find_image(layout, image_id, (root.findtext("filename") or "").strip() or None)
    width, height = read_image_size(image_path)
    rel = f"{xml_path.parent.name}/{xml_path.name}"
    defects: list[Defect] = []
    declared = _declared_size(root)
    if declared != (width, height):
        defects.append(Defect(rel, None, f"<size> says {declared}, image is {(width, height)}", "used the image size"))

    ann = ImageAnnotation(image_id, image_path, width, height)
    for i, obj in enumerate(root.iter("object")):
        raw_name = obj.findtext("name")
        if raw_name is None or not raw_name.strip():
            raise InputError(xml_path, f"object {i} has no <name>")
        name = raw_name.strip()
        if class_of is not None:
            if name not in class_of:
                known = ", ".join(sorted(set(class_of.values())))
                raise InputError(xml_path, f"object {i} has unknown class {name!r} (known: {known}; map it to one)",
                                 option="classes")
            name = class_of[name]
        x1, y1, x2, y2 = (_number(obj, t, xml_path, i) for t in ("xmin", "ymin", "xmax", "ymax"))
        if x2 <= x1 or y2 <= y1:
            defects.append(Defect(rel, i, f"zero or negative size box {[x1, y1, x2, y2]}", "dropped"))
            continue
        cx1, cy1, cx2, cy2 = max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height))
        if (cx1, cy1, cx2, cy2) != (x1, y1, x2, y2):
            if cx2 <= cx1 or cy2 <= cy1:
                defects.append(Defect(rel, i, f"box {[x1, y1, x2, y2]} lies outside the image", "dropped"))
                continue
            defects.append(Defect(rel, i, f"box {[x1, y1, x2, y2]} reaches outside the image", "clipped"))
        ann.boxes.append(Box(name, cx1, cy1, cx2, cy2))
    return ann, defects


def raw_class_names(xml_paths: list[Path]) -> dict[str, int]:
    """Stripped class names found in the XML files, with their object counts."""
    counts: dict[str, int] = {}
    for path in xml_paths:
        try:
            root = etree.parse(str(path), SAFE_PARSER).getroot()
        except (OSError, etree.XMLSyntaxError):
            continue  # reported with its file name by parse_annotation
        for name in root.iterfind("object/name"):
            key = (name.text or "").strip()
            if key:
                counts[key] = counts.get(key, 0) + 1
    return counts
