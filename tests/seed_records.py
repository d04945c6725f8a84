"""Records that carry the seed report's figures (DistilBERT SST-2 at batch size 8, CPU vs GPU)."""

from bench_protocol.records import results_document
from bench_protocol.spec import CellSpec

RUN_ID = "20250101-000000-5eed00"

CPU_FP = {"fingerprint_id": "cpuhost0000", "hostname": "cpu-host", "platform": "Linux-6.6.56+-x86_64-with-glibc2.35",
          "processor": "x86_64", "cpu_model": "Intel Xeon", "cpu_flags": ["avx2"], "logical_cores": 4, "physical_cores": 2,
          "memory_gb": 31.35, "python": "3.11.11", "torch": "2.5.1+cu124", "transformers": "4.47.0", "torch_threads": 4,
          "device": "cpu", "gpu": None}
GPU_FP = dict(CPU_FP, fingerprint_id="gpuhost0000", hostname="gpu-host", device="cuda",
              gpu={"name": "Tesla T4", "memory_gb": 15.0, "compute_capability": "7.5", "power_limit_w": 70.0},
              gpu_count=1, gpu_driver="550.54.15", cuda_version="12.4", cudnn_version=90100)

MODEL = {"model": "distilbert-base-uncased-finetuned-sst-2-english", "model_type": "distilbert", "hidden_size": 768,
         "num_hidden_layers": 6, "num_attention_heads": 12, "parameters": 66955010, "weights": "pretrained",
         "weights_source": "hub", "max_position_embeddings": 512}


def cell(pool, latency, throughput, cpu_mem, gpu_mem=None, power=None, fp="cpuhost0000"):
    return {
        "schema_version": 1, "cell_id": CellSpec(run_id=RUN_ID, pool=pool, batch_size=8, seq_len=128, dtype="fp32").cell_id, "run_id": RUN_ID, "pool": pool, "device": pool,
        "batch_size": 8, "seq_len": 128, "dtype": "fp32", "status": "ok", "error": None, "model": MODEL,
        "metrics": {"latency_ms": {"n": 100, "mean": latency, "median": latency, "p90": latency, "p95": latency,
                                   "p99": latency, "std": 0.01 * latency, "min": latency, "max": latency, "cv": 0.01},
                    "throughput_mean": throughput, "throughput_measured": throughput, "tokens_per_s": throughput * 128,
                    "cpu_memory_mb_max": cpu_mem, "gpu_memory_mb_max": gpu_mem, "gpu_avg_power_w": power},
        "trackers": {}, "latencies_ms": [latency] * 3, "fingerprint_id": fp, "host": "h", "worker": "w",
    }


def seed_document():
    cells = [cell("cpu", 449.57, 17.83, 1671.68),
             # 16.097 ms prints as 16.10; the seed's speedup (27.93) comes from its unrounded figures.
             cell("cuda", 16.097, 497.94, 1599.68, 746.88, 216.24, fp="gpuhost0000")]
    spec = {"pools": ["cpu", "cuda"], "baseline": "cpu", "rules": {}}
    return results_document({"run_id": RUN_ID, "spec": spec}, cells, {"cpuhost0000": CPU_FP, "gpuhost0000": GPU_FP})
