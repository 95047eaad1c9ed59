# Two commands on a fresh clone:  make all   (the whole pipeline)   make test
# Every target creates .venv from requirements.txt first when it is missing.
PYTHON  ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
DATASET ?= mnist
EPOCHS  ?= 10
DEVICE  ?= auto
SEED    ?= 0
K       ?= 16 32 64 128 256 512
SEEDS   ?= 0 1 2
CONV_EPOCHS ?= $(EPOCHS)
VAE_CKPT := experiments/checkpoints/vae_$(DATASET).pt
COMMON  := --dataset $(DATASET) --seed $(SEED) --device $(DEVICE)
# A stage whose checkpoint exists is resumed (a no-op once it has its epochs), so make all reruns.
resume_if = $(if $(wildcard $(1)),--resume)

.PHONY: all venv vae vqvae geodesic compare-quick generate-quick report-quick full grid tuned generation ablation kl-weight batch-size report test bench bench-grid usage-sweep clean-outputs help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

all: vae vqvae geodesic compare-quick generate-quick report-quick  ## the whole pipeline on the default data, quick setting (untracked outputs only)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e . || \
		$(PY) -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

venv: $(STAMP)  ## create .venv from requirements.txt (and install this repo editable)

vae: $(STAMP)  ## stage 1: train the VAE and draw its plots
	$(PY) train/train_vae.py $(COMMON) --epochs $(EPOCHS) $(call resume_if,$(VAE_CKPT))

vqvae: $(STAMP)  ## stage 2: train both VQ-VAE baselines (conv K=512, global K=256)
	$(PY) train/train_vqvae.py $(COMMON) --arch global --epochs $(EPOCHS) \
		$(call resume_if,experiments/checkpoints/vqvae_global_$(DATASET).pt)
	$(PY) train/train_vqvae.py $(COMMON) --arch conv --epochs $(CONV_EPOCHS) \
		$(call resume_if,experiments/checkpoints/vqvae_conv_$(DATASET).pt)

geodesic: $(STAMP)  ## stage 3: geodesic k-medoids and k-means on the VAE's latents
	$(PY) train/train_geodesic.py --vae-checkpoint $(VAE_CKPT) --device $(DEVICE) --seed $(SEED)

compare-quick: $(STAMP)  ## stage 4: the comparison, quick setting (K 16 64 256, 3 seeds, 5 epochs) -> experiments/results/quick/
	$(PY) train/run_comparison.py --dataset $(DATASET) --quick --device $(DEVICE)

generate-quick: $(STAMP)  ## stage 5: a small prior over each method's codes (K=64, seed 0), samples, FID -> experiments/results/quick/
	$(PY) train/run_generation.py --dataset $(DATASET) --quick --device $(DEVICE)

report-quick: $(STAMP)  ## report/report_quick.pdf from the quick setting's results (git-ignored)
	$(PY) report/build_report.py --setting quick

full: $(STAMP)  ## the complete sweep (DATASET=fashion-mnist K="..." SEEDS="..." CONV_EPOCHS=...), then the report
	$(PY) train/run_comparison.py --dataset $(DATASET) --codebook-sizes $(K) --seeds $(SEEDS) \
		--epochs $(EPOCHS) --conv-epochs $(CONV_EPOCHS) --device $(DEVICE)
	$(PY) report/build_report.py

GRID_METHODS := vqvae-conv kmeans-conv geodesic-conv vae-conv
GRID_FIT ?=
grid: $(STAMP)  ## the grid-rate sweep (DATASET=fashion-mnist; GRID_FIT=N fits the grid quantizers on N images' vectors), then the report
	$(PY) train/run_comparison.py --dataset $(DATASET) --methods $(GRID_METHODS) --codebook-sizes $(K) \
		--seeds $(SEEDS) --epochs $(EPOCHS) --conv-epochs $(CONV_EPOCHS) \
		$(if $(GRID_FIT),--grid-fit-images $(GRID_FIT)) --device $(DEVICE)
	$(PY) report/build_report.py

RATE ?= image
TUNED_K ?= 16 64 512
STAGE ?= all
ONLY ?=
tuned: $(STAMP)  ## the tuned protocol (DATASET=... RATE=image|grid SEEDS=... TUNED_K=... STAGE=... ONLY=methods): settings and cells chosen on validation, then each of SEEDS, then priors over the chosen codes -> experiments/results/tuned/ (resumes; chunks: SEEDS=1 TUNED_K=16 STAGE=rows)
	$(PY) train/run_tuned.py --dataset $(DATASET) --rate $(RATE) --seeds $(SEEDS) --codebook-sizes $(TUNED_K) --stage $(STAGE) $(if $(ONLY),--only $(ONLY)) --device $(DEVICE)

GEN_K ?= 64 512
generation: $(STAMP)  ## the generative half (DATASET=...): PixelCNN / histogram priors, samples, FID at GEN_K, then the report
	$(PY) train/run_generation.py --dataset $(DATASET) --codebook-sizes $(GEN_K) --seeds $(SEEDS) \
		--epochs $(EPOCHS) --conv-epochs $(CONV_EPOCHS) $(if $(GRID_FIT),--grid-fit-images $(GRID_FIT)) \
		--device $(DEVICE)
	$(PY) report/build_report.py

ABLATION := --dataset fashion-mnist --codebook-sizes 16 64 256 --seeds 0 1 2 \
	--methods vae-continuous kmeans-vae geodesic-vae vqvae-global --edge-lengths latent decoder \
	--code-vectors medoid refined --decoders frozen finetuned --no-figures

ablation: $(STAMP)  ## the fair-fight ablation on full Fashion-MNIST (K 16 64 256, 3 seeds, every cell, with vqvae-global) -> experiments/results, report/report.pdf
	$(PY) train/run_comparison.py $(ABLATION) --device $(DEVICE)
	$(PY) report/build_report.py

KL_WEIGHTS ?= 0.1 0.01
KL_GEN_WEIGHTS ?= 0.01
KL_FLAGS := --dataset fashion-mnist --seeds $(SEEDS) --epochs $(EPOCHS) --conv-epochs 3 --grid-fit-images 6000
kl-weight: $(STAMP)  ## grid rate with beta-VAEs (KL_WEIGHTS; priors at K=512 for KL_GEN_WEIGHTS), Fashion-MNIST -> experiments/results/kl_weight/, report
	for beta in $(KL_WEIGHTS); do \
		$(PY) train/run_comparison.py $(KL_FLAGS) --methods vae-conv kmeans-conv geodesic-conv \
			--codebook-sizes 16 32 64 128 256 512 --no-figures --vae-kl-weight $$beta \
			--results-dir experiments/results/kl_weight/beta-$$beta --device $(DEVICE) || exit 1; \
	done
	for beta in $(KL_GEN_WEIGHTS); do \
		$(PY) train/run_generation.py $(KL_FLAGS) --methods kmeans-conv geodesic-conv \
			--codebook-sizes 512 --vae-kl-weight $$beta \
			--results-dir experiments/results/kl_weight/beta-$$beta --device $(DEVICE) || exit 1; \
	done
	$(PY) report/build_report.py

BATCH_SIZES ?= 8 16 32 64 128
ONE_CODE := vae-continuous kmeans-vae geodesic-vae vqvae-global
ONE_CODE_GEN := vqvae-global kmeans-vae geodesic-vae
batch-size: $(STAMP)  ## each side's batch size chosen on validation (DATASET, seed 0), then the one-code sweep and its priors at it -> experiments/results/batch_size/, report
	flags=$$($(PY) train/select_batch_size.py --dataset $(DATASET) --batch-sizes $(BATCH_SIZES) \
		--device $(DEVICE)) && \
	$(PY) train/run_comparison.py --dataset $(DATASET) --methods $(ONE_CODE) $$flags --seeds $(SEEDS) \
		--results-dir experiments/results/batch_size --no-figures --device $(DEVICE) && \
	$(PY) train/run_generation.py --dataset $(DATASET) --methods $(ONE_CODE_GEN) $$flags \
		--codebook-sizes $(GEN_K) --seeds $(SEEDS) --results-dir experiments/results/batch_size \
		--device $(DEVICE)
	$(PY) report/build_report.py

report: $(STAMP)  ## rebuild report/report.pdf from the published results in experiments/results
	$(PY) report/build_report.py

test: $(STAMP)  ## run the test suite
	$(PY) -m pytest

bench: $(STAMP)  ## run the benchmarks (needs Fashion-MNIST: apt-get install dataset-fashion-mnist)
	$(PY) benchmarks/bench_vae.py
	$(PY) benchmarks/bench_vqvae.py
	$(PY) benchmarks/bench_geodesic.py

bench-grid: $(STAMP)  ## the 2.94M-vector grid-scale benchmark: HNSW graph, K=512 geodesic k-medoids, CLARA (~25 min)
	$(PY) benchmarks/bench_grid_scale.py

usage-sweep: $(STAMP)  ## can any codebook-rule setting reach epoch-1 usage 0.90 on mnist-5k? (48 settings, K 256 512, batch 128 16; ~15 min) -> benchmarks/results/vq_restart_sweep.csv
	$(PY) benchmarks/sweep_vq_restarts.py

clean-outputs:  ## delete generated logs, checkpoints, plots and cached comparison models
	rm -rf experiments/logs experiments/checkpoints experiments/plots experiments/comparison \
		experiments/results/quick report/report_quick.pdf
