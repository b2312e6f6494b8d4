"""Bench: a generation shard (batched prompts, on-device measurement, thumbnails, cache) against a plain
one-prompt-at-a-time diffusers loop (``pipe(prompt).images[0]`` per image) on the same pipeline.

    python bench/bench_generate.py                       # CPU: the tiny test pipeline (tests/tinydiffusion.py)
    python bench/bench_generate.py --pipeline sdxl-tiny  # CPU: SDXL layout (2 text encoders, text_time) scaled down
    python bench/bench_generate.py --pipeline sdxl --device cuda --dtype bfloat16 --resolution 512 \
        --batch-size 16 --images 256                     # GPU: SDXL-Turbo-sized UNet/VAE/text encoders, random weights

Both sides run the same pipeline object after it is loaded; load time is reported apart. The shard side runs
:func:`sieve.verify.shard.run_shard` in a fresh cache every round (so everything is generated), measuring a
target model (tests' tiny CNN on CPU, a random-weight torchvision ResNet-50 on GPU) and writing thumbnails; the
loop side only generates. The two sides run interleaved for ``--rounds`` rounds (at least 3 for a recorded
result; bench/timing.py) and are reported from the minimum and the median time. The shard's own
generate-only rate (its manifest's ``images_per_second``) is recorded beside its whole-shard rate. Results are
appended as one JSON line to ``bench/results/generate.jsonl``.

FLOP floor (GPU): about 4.1 TFLOP per SDXL-Turbo image at 512 x 512 and 1 step (most of it the VAE decoder);
at the GPU's dense bf16 peak this bounds images/s from above.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "workflow"))
sys.path.insert(0, str(REPO / "bench"))
from timing import MIN_ROUNDS, interleaved, speedup, summary  # noqa: E402

SDXL_TURBO_TFLOP_PER_IMAGE = 4.1
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}


def sdxl_pipeline(scale: str, dtype: torch.dtype, device: str):
    """An SDXL pipeline from configs with random weights: ``sdxl`` = SDXL-Turbo sizes, ``sdxl-tiny`` = same
    layout, tiny widths (to test this code on a CPU)."""
    from diffusers import (
        AutoencoderKL,
        EulerAncestralDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    from tinydiffusion import write_tiny_clip_tokenizer

    tmp = Path(tempfile.mkdtemp())
    vocab = write_tiny_clip_tokenizer(tmp / "tok")
    tok = CLIPTokenizer.from_pretrained(str(tmp / "tok"))
    full = scale == "sdxl"
    te1 = (
        dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12)
        if full
        else dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
    )
    te2 = (
        dict(
            hidden_size=1280,
            intermediate_size=5120,
            num_hidden_layers=32,
            num_attention_heads=20,
            projection_dim=1280,
            hidden_act="gelu",
        )
        if full
        else dict(
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            projection_dim=16,
        )
    )
    common = dict(
        vocab_size=vocab,
        max_position_embeddings=77,
        bos_token_id=vocab - 2,
        eos_token_id=vocab - 1,
        pad_token_id=vocab - 1,
    )
    if full:
        unet_cfg = dict(
            sample_size=64,
            block_out_channels=(320, 640, 1280),
            layers_per_block=2,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=(5, 10, 20),
            transformer_layers_per_block=(1, 2, 10),
            cross_attention_dim=2048,
            addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=2816,
            norm_num_groups=32,
        )
        vae_cfg = dict(
            block_out_channels=(128, 256, 512, 512),
            layers_per_block=2,
            norm_num_groups=32,
            sample_size=512,
            scaling_factor=0.13025,
        )
    else:
        unet_cfg = dict(
            sample_size=16,
            block_out_channels=(8, 16),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=2,
            transformer_layers_per_block=1,
            cross_attention_dim=32,
            addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=6 * 8 + 16,
            norm_num_groups=4,
        )
        vae_cfg = dict(block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4, sample_size=32)
    n_vae = len(vae_cfg["block_out_channels"])
    with torch.device(device):
        unet = UNet2DConditionModel(
            in_channels=4,
            out_channels=4,
            addition_embed_type="text_time",
            use_linear_projection=True,
            **unet_cfg,
        )
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            latent_channels=4,
            down_block_types=("DownEncoderBlock2D",) * n_vae,
            up_block_types=("UpDecoderBlock2D",) * n_vae,
            **vae_cfg,
        )
        text_encoder = CLIPTextModel(CLIPTextConfig(**common, **te1))
        text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**common, **te2))
    scheduler = EulerAncestralDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        timestep_spacing="trailing",
        steps_offset=1,
    )
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tok,
        tokenizer_2=tok,
        unet=unet,
        scheduler=scheduler,
    )
    return pipe.to(device, dtype)


def shard_timer(
    prompts: list[str],
    spec: dict,
    models: dict,
    gen,
    device: str,
    texts: list[str] | None = None,
):
    """A callable that runs one whole shard of ``prompts`` in a fresh cache (so everything is generated) with
    the preloaded generator ``gen``: its wall seconds, the manifest's generate-only rate and images generated.
    Shared by this bench and gpu_suite.py."""
    from sieve.verify.requests import collect_requests
    from sieve.verify.shard import run_shard

    req = collect_requests([], "{}", 1)
    req["concepts"] = [
        {"key": f"k{i:06d}", "prompt": p, "shard": 0, "texts": [t], "ids": [str(i)]}
        for i, (p, t) in enumerate(zip(prompts, texts or prompts, strict=True))
    ]

    def run() -> dict:
        with tempfile.TemporaryDirectory() as cache:
            t0 = time.perf_counter()
            m = run_shard(
                req,
                0,
                spec,
                models,
                cache,
                str(Path(cache) / "m.json"),
                device=device,
                load_generator_fn=lambda *_: gen,
            )
            seconds = time.perf_counter() - t0
        return {"seconds": seconds, "generate_only_per_s": m["images_per_second"], "n": m["n_generated"]}

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pipeline", choices=["tiny", "sdxl-tiny", "sdxl"], default="tiny")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--images", type=int, default=64, help="images per side (concepts x images per concept)")
    ap.add_argument("--images-per-concept", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=MIN_ROUNDS)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "generate.jsonl"))
    ap.add_argument("--note", default="", help="recorded as is, e.g. that the machine was shared")
    args = ap.parse_args()
    load_at_start = round(os.getloadavg()[0], 2)
    torch.manual_seed(0)
    dtype = getattr(torch, args.dtype)
    from sieve.backends.generators import DiffusersGenerator

    t0 = time.perf_counter()
    if args.pipeline == "tiny":
        from tinydiffusion import build_tiny_pipeline

        pipe = build_tiny_pipeline(0).to(args.device, dtype)
    else:
        pipe = sdxl_pipeline(args.pipeline, dtype, args.device)
    pipe.set_progress_bar_config(disable=True)
    t_load = time.perf_counter() - t0
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    res = args.resolution
    n_concepts = max(1, args.images // args.images_per_concept)
    n_images = n_concepts * args.images_per_concept
    prompts = [f"a photo of concept number {i}" for i in range(n_concepts)]

    # warm-up (kernels, allocator) for both sides
    for _ in range(args.warmup):
        pipe(prompt=prompts[:1], num_inference_steps=1, guidance_scale=0.0, height=res, width=res)
        pipe(
            prompt=prompts[: min(len(prompts), args.batch_size)],
            num_inference_steps=1,
            guidance_scale=0.0,
            height=res,
            width=res,
            output_type="pt",
        )
    sync()

    # plain loop: one prompt, one image at a time, PIL output
    def loop() -> dict:
        t0 = time.perf_counter()
        for p in prompts:
            for s in range(args.images_per_concept):
                pipe(
                    prompt=p,
                    num_inference_steps=1,
                    guidance_scale=0.0,
                    height=res,
                    width=res,
                    generator=torch.Generator("cpu").manual_seed(s),
                ).images[0]
        sync()
        return {"seconds": time.perf_counter() - t0}

    # shard: batched, measured on the device, thumbnails and activations written to a fresh cache
    if args.device == "cpu":
        models = {"tiny": {"source": "python", "factory": "tinymodels:hotspot_cnn", "batch_size": 64}}
    else:
        models = {
            "resnet50": {"source": "torchvision", "arch": "resnet50", "weights": None, "batch_size": 64}
        }
    gen = DiffusersGenerator(pipe, res, 1, 0.0)
    spec = {
        "source": "python",
        "factory": "bench:preloaded",
        "resolution": res,
        "images_per_concept": args.images_per_concept,
        "batch_size": args.batch_size,
        "shards": 1,
        "seed": 0,
        "keep_images": "thumbnails",
        "thumbnail_size": 128,
        "dtype": args.dtype,
    }
    run_one_shard = shard_timer(prompts, spec, models, gen, args.device)

    def shard() -> dict:
        r = run_one_shard()
        assert r["n"] == n_images, r
        return {"seconds": r["seconds"], "generate_only_images_per_s": r["generate_only_per_s"]}

    runs = interleaved({"loop": loop, "shard": shard}, rounds=args.rounds)
    loop_s, shard_s = summary(runs["loop"], n_images), summary(runs["shard"], n_images)
    gen_only = sorted(r["generate_only_images_per_s"] for r in runs["shard"])

    record = {
        "pipeline": args.pipeline,
        "rounds": args.rounds,
        "load_average_at_start": load_at_start,
        "device": args.device,
        "gpu": torch.cuda.get_device_name()
        if args.device.startswith("cuda")
        else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "dtype": args.dtype,
        "resolution": res,
        "batch_size": args.batch_size,
        "images": n_images,
        "load_s": round(t_load, 2),
        "loop": loop_s,
        "shard": shard_s,
        "shard_generate_only_images_per_s_median": gen_only[len(gen_only) // 2],
        "shard_share_of_generate_only_median": round(
            shard_s["per_s_median"] / gen_only[len(gen_only) // 2], 3
        ),
        "speedup_shard_vs_loop": speedup(loop_s, shard_s),
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        "note": args.note,
    }
    if args.pipeline == "sdxl" and args.device.startswith("cuda"):
        name = torch.cuda.get_device_name()
        peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
        if peak:
            record["flop_floor_images_per_s"] = round(peak / SDXL_TURBO_TFLOP_PER_IMAGE, 1)
            record["share_of_flop_floor"] = round(
                shard_s["per_s_median"] / record["flop_floor_images_per_s"], 3
            )
    print(json.dumps(record, indent=2))
    with open(args.out, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
