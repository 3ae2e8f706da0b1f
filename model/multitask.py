"""MultiTaskModel: one shared encoder routed to the LM decoder, the topic head and the emotion head."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from model.config import ModelConfig
from model.decoder import Decoder
from model.encoder import Encoder
from model.heads import ClassificationHead, ClassifierOutput
from model.kv_cache import DecoderCache

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


@dataclass
class MultiTaskOutput:
    encoder_states: torch.Tensor  # (B, T, d_model)
    lm_logits: torch.Tensor | None  # (B, T_dec, vocab) when decoder inputs were given
    classes: ClassifierOutput


class MultiTaskModel(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab_size, config.d_model)  # shared by both stacks
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.lm_head = (
            None if config.tie_word_embeddings else nn.Linear(config.d_model, config.vocab_size, bias=False)
        )
        n_topics, n_emotions = len(config.topic_labels), len(config.emotion_labels)
        self.topic_head = ClassificationHead(config, n_topics) if n_topics else None
        self.emotion_head = ClassificationHead(config, n_emotions) if n_emotions else None

    # ------------------------------------------------------------------ encoder and heads
    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """input_ids (B, T), attention_mask (B, T) -> final encoder states (B, T, d_model)."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        return self.encoder(self.token_embedding(input_ids), attention_mask)

    def classify(self, encoder_states: torch.Tensor, attention_mask: torch.Tensor) -> ClassifierOutput:
        return ClassifierOutput(
            topic_logits=None if self.topic_head is None else self.topic_head(encoder_states, attention_mask),
            emotion_logits=None
            if self.emotion_head is None
            else self.emotion_head(encoder_states, attention_mask),
        )

    # ------------------------------------------------------------------ decoder and LM head
    def project_to_vocab(self, decoder_states: torch.Tensor) -> torch.Tensor:
        """(B, T, d_model) -> (B, T, vocab). Original T5 (tied) rescales by d_model**-0.5 first."""
        if self.config.scale_decoder_outputs:
            decoder_states = decoder_states * self.config.d_model**-0.5
        weight = self.token_embedding.weight if self.lm_head is None else self.lm_head.weight
        return F.linear(decoder_states, weight)

    def lm_logits(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        decoder_input_ids: torch.Tensor,
        encoder_states: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Teacher-forced logits (B, T_dec, vocab); pass encoder_states to reuse an encoder pass."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if encoder_states is None:
            encoder_states = self.encode(input_ids, attention_mask)
        cross = self.decoder.cross_key_values(encoder_states)
        hidden = self.decoder(self.token_embedding(decoder_input_ids), cross, attention_mask)
        return self.project_to_vocab(hidden)

    def start_decoding(self, encoder_states: torch.Tensor, attention_mask: torch.Tensor) -> DecoderCache:
        """A fresh cache holding the cross-attention K/V of these documents (computed once)."""
        return DecoderCache(self.decoder.cross_key_values(encoder_states), attention_mask.bool())

    def decode_step(self, token_ids: torch.Tensor, cache: DecoderCache) -> torch.Tensor:
        """token_ids (B, Tq) continue the cached sequences -> logits of the last position (B, vocab)."""
        hidden = self.decoder(self.token_embedding(token_ids), cache.cross, cache.cross_mask, cache)
        return self.project_to_vocab(hidden[:, -1])

    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        max_new_tokens: int = 64,
        min_new_tokens: int = 0,
        num_beams: int = 1,
        length_penalty: float = 1.0,
        no_repeat_ngram_size: int = 0,
        repetition_penalty: float = 1.0,
        encoder_states: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, T_new) generated ids, without the decoder start token, pad after EOS. See model.generation."""
        from model.generation import GenerationSettings, generate

        settings = GenerationSettings(
            max_new_tokens=max_new_tokens,
            min_new_tokens=min_new_tokens,
            num_beams=num_beams,
            length_penalty=length_penalty,
            no_repeat_ngram_size=no_repeat_ngram_size,
            repetition_penalty=repetition_penalty,
        )
        return generate(self, input_ids, attention_mask, settings, encoder_states=encoder_states)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        decoder_input_ids: torch.Tensor | None = None,
    ) -> MultiTaskOutput:
        """One encoder pass routed to every head (training entry point)."""
        states = self.encode(input_ids, attention_mask)
        logits = None
        if decoder_input_ids is not None:
            logits = self.lm_logits(input_ids, attention_mask, decoder_input_ids, encoder_states=states)
        return MultiTaskOutput(states, logits, self.classify(states, attention_mask))

    # ------------------------------------------------------------------ persistence (our own format)
    def save_pretrained(self, folder: str | Path) -> Path:
        """Write config.json (ModelConfig, labels included) and model.safetensors."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.config.to_json(folder / CONFIG_FILE)
        tensors = {name: t.detach().contiguous().cpu() for name, t in self.state_dict().items()}
        save_file(tensors, str(folder / WEIGHTS_FILE), metadata={"format": "pt"})
        logger.info("saved model to %s", folder)
        return folder

    @classmethod
    def from_folder(
        cls, folder: str | Path, device: str | torch.device | None = None, dtype: torch.dtype | None = None
    ) -> MultiTaskModel:
        """Load a folder written by save_pretrained; strict about keys and shapes. Returns the model in eval mode."""
        from safetensors.torch import load_file

        from model.checkpoint import copy_state

        folder = Path(folder)
        if not (folder / CONFIG_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
            raise FileNotFoundError(
                f"{folder} is not a saved LexiMind model: needs {CONFIG_FILE} and {WEIGHTS_FILE}"
            )
        model = cls(ModelConfig.from_json(folder / CONFIG_FILE))
        copy_state(model, load_file(str(folder / WEIGHTS_FILE)), source=str(folder))
        return model.to(device=device, dtype=dtype).eval()
