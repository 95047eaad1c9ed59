"""The experiment's vocabulary: every method of the comparison, named once.

Each :class:`Method` says what family it belongs to, how many codes an image
gets (so its bits per image at codebook size K), how it is built, and how it
is drawn. The runner (``train/run_comparison.py``), the training scripts, the
report and the tests import these entries instead of spelling method names;
adding a method is adding one entry to :data:`METHODS` (and, for a new way of
building, one builder in the runner's registry).

    >>> METHODS["geodesic-vae"].bits(64)
    6.0
    >>> [m.name for m in methods(family="a-posteriori", rate="image")]
    ['kmeans-vae', 'geodesic-vae']
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

# Families: how the discrete representation is obtained.
END_TO_END = "end-to-end"  # a VQ-VAE trained with its quantizer (van den Oord et al. 2017)
A_POSTERIORI = "a-posteriori"  # a quantizer fitted on a trained VAE's latents
CONTINUOUS = "continuous"  # no quantization: the bound of the a-posteriori methods
FAMILIES = (END_TO_END, A_POSTERIORI, CONTINUOUS)

# Rates: one code per image (log2 K bits) or a 7x7 grid of codes (49 log2 K bits).
IMAGE_RATE = "image"
GRID_RATE = "grid"
GRID_POSITIONS = 49


@dataclass(frozen=True)
class Method:
    """One method of the comparison.

    name : the string used in CSVs, flags and figures.
    family : END_TO_END, A_POSTERIORI or CONTINUOUS.
    rate : IMAGE_RATE or GRID_RATE (the operating point it is compared at).
    codes_per_image : 1, 49, or 0 for an unquantized reference.
    build : how the runner obtains it: "vqvae" (train_vqvae.py), "quantizer"
        (a quantizer on VAE latents) or "vae" (the VAE itself).
    options : plain values for the builder, e.g. {"arch": "global"} or
        {"quantizer": "geodesic"} (the quantizer kinds: QUANTIZER_KINDS).
    label, color, marker : how every figure draws it.
    """

    name: str
    family: str
    rate: str
    codes_per_image: int
    build: str
    options: dict = field(default_factory=dict)
    label: str = ""
    color: str = "#333333"
    marker: str = "o"
    description: str = ""

    @property
    def from_library(self) -> bool:
        """True for an end-to-end method whose quantizer is not the classical VQ-VAE's
        (options beyond its arch, e.g. {"quantizer": "fsq"}: vector-quantize-pytorch's)."""
        return self.family == END_TO_END and set(self.options) != {"arch"}

    @property
    def quantized(self) -> bool:
        """False for the unquantized reference (no K, no bits)."""
        return self.codes_per_image > 0

    def bits(self, K: int) -> float:
        """Bits per image at codebook size K: codes_per_image * log2 K (NaN unquantized)."""
        return self.codes_per_image * math.log2(K) if self.quantized else float("nan")

    def codebook_sizes(self, sizes) -> list[int]:
        """The K values this method runs at: ``sizes``, or [0] for the reference."""
        return list(sizes) if self.quantized else [0]


METHODS: dict[str, Method] = {m.name: m for m in (
    # one code per image
    Method("vqvae-global", END_TO_END, IMAGE_RATE, 1, "vqvae", {"arch": "global"},
           label=r"vqvae-global ($\log_2 K$ bits)", color="#1f77b4", marker="s",
           description="end-to-end VQ-VAE, one code per image"),
    Method("kmeans-vae", A_POSTERIORI, IMAGE_RATE, 1, "quantizer", {"quantizer": "euclidean", "vae": "mlp"},
           label=r"kmeans-vae ($\log_2 K$ bits)", color="#ff7f0e", marker="^",
           description="k-means on the VAE's latent means (the Euclidean ablation)"),
    Method("geodesic-vae", A_POSTERIORI, IMAGE_RATE, 1, "quantizer", {"quantizer": "geodesic", "vae": "mlp"},
           label=r"geodesic-vae ($\log_2 K$ bits)", color="#2ca02c", marker="o",
           description="geodesic k-medoids on the k-NN graph of the VAE's latent means"),
    Method("vae-continuous", CONTINUOUS, IMAGE_RATE, 0, "vae", {"vae": "mlp"},
           label="vae-continuous (unquantized)", color="#555555", marker="",
           description="the VAE itself, unquantized: the bound of the a-posteriori methods"),
    # a 7x7 grid of codes per image (the VQ-VAE's own rate)
    Method("vqvae-conv", END_TO_END, GRID_RATE, GRID_POSITIONS, "vqvae", {"arch": "conv"},
           label=r"vqvae-conv ($49\,\log_2 K$ bits)", color="#9467bd", marker="D",
           description="end-to-end VQ-VAE on a 7x7 grid of codes"),
    Method("kmeans-conv", A_POSTERIORI, GRID_RATE, GRID_POSITIONS, "quantizer",
           {"quantizer": "euclidean", "vae": "conv"},
           label=r"kmeans-conv ($49\,\log_2 K$ bits)", color="#d62728", marker="v",
           description="k-means on every grid vector of the conv VAE's latent means"),
    Method("geodesic-conv", A_POSTERIORI, GRID_RATE, GRID_POSITIONS, "quantizer",
           {"quantizer": "geodesic", "vae": "conv"},
           label=r"geodesic-conv ($49\,\log_2 K$ bits)", color="#17becf", marker="P",
           description="geodesic k-medoids on the k-NN graph of every grid vector of the conv VAE"),
    Method("vae-conv", CONTINUOUS, GRID_RATE, 0, "vae", {"vae": "conv"},
           label="vae-conv (unquantized)", color="#8c8c8c", marker="",
           description="the conv VAE itself, unquantized: the bound of the grid a-posteriori methods"),
    # end-to-end with vector-quantize-pytorch's quantizers (models/library_quantizers.py):
    # the same encoder and decoder as vqvae-conv / vqvae-global, only the quantizer differs
    Method("fsq-conv", END_TO_END, GRID_RATE, GRID_POSITIONS, "vqvae",
           {"arch": "conv", "quantizer": "fsq"},
           label=r"fsq-conv ($49\,\log_2 K$ bits)", color="#bcbd22", marker="*",
           description="end-to-end finite scalar quantization (Mentzer et al. 2024) on a 7x7 grid "
                       "of codes, vqvae-conv's backbone"),
    Method("rotvq-conv", END_TO_END, GRID_RATE, GRID_POSITIONS, "vqvae",
           {"arch": "conv", "quantizer": "library-vq", "rotation_trick": True, "kmeans_init": True},
           label=r"rotvq-conv ($49\,\log_2 K$ bits)", color="#8c564b", marker="h",
           description="end-to-end VQ-VAE with vector-quantize-pytorch's VectorQuantize (rotation "
                       "trick, k-means init, dead-code replacement) on vqvae-conv's backbone"),
    # FSQ's projected values batch-normalized: the library's FSQ collapses to one code here
    Method("fsq-global", END_TO_END, IMAGE_RATE, 1, "vqvae",
           {"arch": "global", "quantizer": "fsq", "fsq_norm": "batch"},
           label=r"fsq-global ($\log_2 K$ bits)", color="#e377c2", marker="X",
           description="end-to-end finite scalar quantization, one code per image, "
                       "vqvae-global's backbone, FSQ's inputs batch-normalized"),
)}
METHOD_NAMES = tuple(METHODS)

# The proposal and what it is measured against, in the order the report argues:
# the Euclidean ablation first, then the end-to-end baseline.
PROPOSAL = "geodesic-vae"
OPPONENTS = ("kmeans-vae", "vqvae-global")


def get(name: str) -> Method:
    """The entry of ``name``; a ValueError lists the known names."""
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; known: {', '.join(METHODS)}") from None


def methods(*, family: str | None = None, rate: str | None = None,
            quantized: bool | None = None) -> list[Method]:
    """Entries in :data:`METHODS` order, filtered by family, rate and quantized."""
    return [m for m in METHODS.values()
            if (family is None or m.family == family) and (rate is None or m.rate == rate)
            and (quantized is None or m.quantized == quantized)]


def names(**filters) -> tuple[str, ...]:
    """Names of :func:`methods` (same filters)."""
    return tuple(m.name for m in methods(**filters))


def matched(rate: str = IMAGE_RATE) -> tuple[str, ...]:
    """The quantized methods compared at matched bits at ``rate``."""
    return names(rate=rate, quantized=True)


def reference(rate: str = IMAGE_RATE) -> str | None:
    """The unquantized reference of ``rate`` (None when there is none)."""
    refs = names(rate=rate, quantized=False)
    return refs[0] if refs else None


# Quantizer kinds of the a-posteriori methods (train_geodesic.py's --method choices).
QUANTIZER_KINDS = ("geodesic", "euclidean")


def quantizer_method(kind: str, rate: str = IMAGE_RATE) -> Method:
    """The a-posteriori method of ``rate`` whose quantizer is ``kind`` ("geodesic", "euclidean")."""
    for m in methods(family=A_POSTERIORI, rate=rate):
        if m.options.get("quantizer") == kind:
            return m
    raise ValueError(f"no method quantizes with {kind!r}; kinds: {QUANTIZER_KINDS}")


# The ablation of the a-posteriori methods: how edges are measured, which vector stands for a
# code, and whether the decoder was fine-tuned on the codes (columns of comparison.csv).
VARIANT_COLUMNS = ("edge_length", "code_vectors", "decoder")
EDGE_LENGTHS = ("latent", "decoder")
CODE_VECTORS = {"geodesic": ("medoid", "refined"), "euclidean": ("centroid",)}
DECODERS = ("frozen", "finetuned")


def variants(name: str, *, edge_lengths=EDGE_LENGTHS[:1], code_vectors=("medoid",),
             decoders=DECODERS[:1]) -> list[dict]:
    """The ablation cells of method ``name`` among the requested options: every
    combination that applies to it (k-means has no edges and only centroids;
    methods that are not a-posteriori have one empty cell, and an end-to-end one a
    second, ``decoder="finetuned"``, when fine-tuned decoders are asked for: the
    same decoder treatment, on its own frozen codes)."""
    method = get(name)
    if method.family != A_POSTERIORI:
        cells = [{c: "" for c in VARIANT_COLUMNS}]
        if method.family == END_TO_END and "finetuned" in decoders:
            cells.append({"edge_length": "", "code_vectors": "", "decoder": "finetuned"})
        return cells
    kind = method.options["quantizer"]
    edges = edge_lengths if kind == "geodesic" else ("",)
    vectors = [v for v in code_vectors if v in CODE_VECTORS[kind]] or [CODE_VECTORS[kind][0]]
    if method.rate == GRID_RATE:
        # one grid vector has no decoder of its own (the decoder reads the whole grid): its
        # decoder edge lengths are the per-position pull-back metric in its own image's
        # context (geodesic/position_metric.py), and refined code vectors are not defined
        vectors = [CODE_VECTORS[kind][0]]
    return [{"edge_length": e, "code_vectors": v, "decoder": d}
            for e in edges for v in vectors for d in decoders]
