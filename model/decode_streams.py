"""CPU decoding on every core without intra-op barriers: a batch's rows split across parallel decoders.

A decoding step is hundreds of small ops. With several torch threads each op ends in a barrier, and when
another process holds one of the cores that barrier waits a whole scheduler time slice. One thread per
decoder avoids the barriers; several decoders, each on its own rows and in its own Python thread (torch
releases the GIL inside ops), keep every core busy. Rows do not interact, so the output is the same as one
decoder's.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch
import torch.nn.functional as F

from model.fast_decode import DecoderWeights, DecodeStats, GreedyDecoder
from model.multitask import MultiTaskModel


class DecoderStreams:
    """GreedyDecoder's prepare/load/decode interface over `streams` decoders of `threads` torch threads."""

    def __init__(self, model: MultiTaskModel, streams: int, threads: int = 1, **decoder_options):
        if streams < 1:
            raise ValueError(f"streams must be >= 1, got {streams}")
        weights = DecoderWeights(model)  # one fused copy for all streams
        self.decoders = [
            GreedyDecoder(model, weights=weights, cpu_threads=None, **decoder_options) for _ in range(streams)
        ]
        self.threads = threads
        self.pad_token_id = model.config.pad_token_id
        self._pool = ThreadPoolExecutor(streams, thread_name_prefix="decode")
        self._bounds: list[tuple[int, int]] = []  # rows [start, end) of each decoder in use

    @property
    def stats(self) -> DecodeStats:
        total = DecodeStats(attention=self.decoders[0].stats.attention)
        for decoder in self.decoders:
            for name in ("calls", "steps", "row_steps", "tokens", "compactions", "graphs_captured"):
                setattr(total, name, getattr(total, name) + getattr(decoder.stats, name))
        return total

    def prepare(self, batch_size: int, source_len: int, max_new_tokens: int, padded: bool = True) -> None:
        share, extra = divmod(batch_size, len(self.decoders))
        self._bounds, start = [], 0
        for i in range(min(batch_size, len(self.decoders))):
            end = start + share + (1 if i < extra else 0)
            self._bounds.append((start, end))
            self.decoders[i].prepare(end - start, source_len, max_new_tokens, padded)
            start = end

    def load(self, first_row: int, encoder_states: torch.Tensor, attention_mask: torch.Tensor) -> None:
        last_row = first_row + encoder_states.shape[0]
        for decoder, (start, end) in zip(self.decoders, self._bounds, strict=False):
            lo, hi = max(start, first_row), min(end, last_row)
            if lo < hi:
                part = slice(lo - first_row, hi - first_row)
                decoder.load(lo - start, encoder_states[part], attention_mask[part])

    def decode(self, min_new_tokens: int = 0) -> torch.Tensor:
        """All rows' outputs in row order, padded to the longest."""
        threads = torch.get_num_threads()

        def run(decoder: GreedyDecoder) -> torch.Tensor:
            torch.set_num_threads(self.threads)  # this thread's setting (and MKL's, restored below)
            return decoder.decode(min_new_tokens)

        try:
            outputs = list(self._pool.map(run, self.decoders[: len(self._bounds)]))
        finally:
            torch.set_num_threads(threads)
        width = max(out.shape[1] for out in outputs)
        return torch.cat([F.pad(out, (0, width - out.shape[1]), value=self.pad_token_id) for out in outputs])

    def release(self) -> None:
        for decoder in self.decoders:
            decoder.release()
