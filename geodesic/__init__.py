"""Geodesic quantization: the research algorithm, as a package of its own.

As scikit-learn's Isomap builds on ``sklearn.neighbors``, the estimators in
:mod:`models.geodesic_vq` build on these modules:

* :mod:`geodesic.graph` — the symmetric k-NN graph, its repair, geodesic rows
  and the sparse searches (:class:`~geodesic.graph.Top2Search`,
  :class:`~geodesic.graph.PrunedSearch`);
* :mod:`geodesic.kernels` — the compiled (numba) Dijkstra kernels behind them;
* :mod:`geodesic.kmedoids` — geodesic k-medoids (seeding, alternating, swaps);
* :mod:`geodesic.kmeans_init` — a k-means start for it (centroids snapped to nodes);
* :mod:`geodesic.ann` — approximate neighbours (faiss HNSW) and duplicate collapsing;
* :mod:`geodesic.decoder_metric` — decoder (pull-back) edge lengths;
* :mod:`geodesic.refinement` — refined code vectors;
* :mod:`geodesic.interpolation` — paths along the graph between two latents.

Nothing here reads files or parses arguments.
"""
