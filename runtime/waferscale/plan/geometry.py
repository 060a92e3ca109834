"""Where every weight, activation and KV slot of a Llama decoder sits on a region of PEs.

This is the one Python statement of the decode program's data layout
(``csl/llama_decode/layout.csl`` states the same in CSL, as every kernel's ``run.py`` and
``layout.csl`` do). The planner sizes regions with it, the packer cuts GGUF tensors into tiles
with it, the wafer-numerics reference sums in its order, and the KV manager finds slots with it.
docs/decode-runtime.md explains the dataflow; the rules are:

* A **layer region** is ``W`` columns by ``H`` rows (``H >= n_kv_heads``). Row 0 is the *home
  row*: the residual stream ``x`` (f32) lives there in column blocks (block ``c`` of
  ``hidden`` on column ``c``). Column ``root_x = (W - 1) // 2`` is the *home column*.
* Blocks split ``total`` items over ``parts`` PEs with the first ``total % parts`` blocks one
  item longer (:func:`block_len`, :func:`block_start`), as in every kernel of ``csl/``.
* **QKV** (rows ``g < n_kv_heads``): PE ``(c, g)`` holds the rows of group ``g`` — the group's
  ``G`` query heads, then its key head, then its value head (``(G + 2) * head_dim`` outputs) —
  restricted to input block ``c``. Group ``g``'s q, k and v land on ``(root_x, g)``.
* **O** (rows ``g < n_kv_heads``, transposed): PE ``(c, g)`` holds output block ``c`` of the
  hidden size against the inputs of group ``g``'s query heads (``G * head_dim``).
* **gate/up** (every row): PE ``(c, r)`` holds ``ffn`` block ``r`` of the gate rows, then the
  same block of the up rows, against input block ``c``. Both land on ``(root_x, r)``.
* **down** (every row, transposed): PE ``(c, r)`` holds output block ``c`` against ``ffn``
  block ``r``.
* **KV cache** (rows ``g < n_kv_heads``): position ``p`` of group ``g`` is slot ``p // W`` of
  PE ``(p % W, g)``: round robin, so every PE of the row holds about ``L / W`` of ``L``
  positions and attention work is spread from the first token on.
* The **head region** (final norm, LM head over the tied embedding, argmax) is ``W`` columns
  by ``H_head`` rows: PE ``(c, r)`` holds vocab block ``r`` against input block ``c``.
* Weight tiles are stored column-major (``tile[j * m + i]``), f16, as ``csl/gemv`` does.
* **Regions, top to bottom** (:attr:`LayerGrid.regions`): the first ``n_resident`` layers
  each on a region of their own; then ``stream_slots`` *streaming slots* (two per streaming
  region of the planner), also ``W x H``; then the head region. Streamed layer ``j`` (layer
  ``n_resident + j``) runs in slot ``j mod stream_slots``, whose weight tiles the host
  streams in before each layer that runs there, and whose KV cache and norm gains hold block
  ``j div stream_slots`` (:meth:`LayerGrid.kv_index`) for each of its layers.

Limits: a vertical stack of equal regions; every block must be non-empty (``W <= hidden``,
``H <= ffn``, ``H_head <= vocab``).
"""

from __future__ import annotations

from dataclasses import dataclass

from waferscale.model.config import ModelConfig


def block_len(total: int, parts: int, i: int) -> int:
    """Length of block ``i`` of ``total`` items over ``parts`` blocks (longer blocks first)."""
    return total // parts + (1 if i < total % parts else 0)


def block_start(total: int, parts: int, i: int) -> int:
    """Index of the first item of block ``i`` (see :func:`block_len`)."""
    return i * (total // parts) + min(i, total % parts)


def block_slice(total: int, parts: int, i: int) -> slice:
    """The items of block ``i`` as a slice."""
    s = block_start(total, parts, i)
    return slice(s, s + block_len(total, parts, i))


@dataclass(frozen=True)
class LayerGrid:
    """The shape of one layer region and of the head region, for one model.

    Attributes:
        config: the model.
        W: columns of every region.
        H: rows of a layer region (at least ``n_kv_heads``).
        H_head: rows of the head region.
        slots: KV slots per attention PE; the KV capacity is ``slots * W`` positions.
        n_resident: layers with a region of their own (the first ones); None: every layer.
        stream_slots: streaming slots the other layers run in (0 when all are resident).
    """

    config: ModelConfig
    W: int
    H: int
    H_head: int
    slots: int
    n_resident: int | None = None
    stream_slots: int = 0

    def __post_init__(self) -> None:
        c = self.config
        if not (1 <= self.W <= c.hidden_size):
            raise ValueError(f"W={self.W}: need 1 <= W <= hidden size {c.hidden_size}")
        if not (c.n_kv_heads <= self.H <= c.ffn_size):
            raise ValueError(f"H={self.H}: need n_kv_heads ({c.n_kv_heads}) <= H <= "
                             f"ffn size ({c.ffn_size})")
        if not (1 <= self.H_head <= c.vocab_size):
            raise ValueError(f"H_head={self.H_head}: need 1 <= H_head <= vocab {c.vocab_size}")
        if self.slots < 1:
            raise ValueError(f"slots={self.slots}: need at least one KV slot per PE")
        L, n_res = c.n_layers, self.resident_layers
        if not 0 <= n_res <= L:
            raise ValueError(f"n_resident={n_res}: need 0 <= n_resident <= {L} layers")
        if (n_res < L) != (self.stream_slots > 0) or not (
                n_res == L or 2 <= self.stream_slots <= L - n_res):
            raise ValueError(f"stream_slots={self.stream_slots}: the {L - n_res} streamed "
                             "layers need between 2 and that many slots (0 if none)")

    # ---- regions ----
    @property
    def resident_layers(self) -> int:
        """Layers with a region of their own."""
        return self.config.n_layers if self.n_resident is None else self.n_resident

    @property
    def regions(self) -> int:
        """Layer regions (resident layers and streaming slots); the head region is next."""
        return self.resident_layers + self.stream_slots

    @property
    def rows(self) -> int:
        """Rows of the program rectangle: the layer regions, then the head region."""
        return self.regions * self.H + self.H_head

    @property
    def head_row(self) -> int:
        """First row of the head region."""
        return self.regions * self.H

    def streamed(self, layer: int) -> bool:
        """Whether ``layer``'s weights are streamed in every step."""
        return layer >= self.resident_layers

    def region(self, layer: int) -> int:
        """The region ``layer`` runs in (its rows are ``region * H`` onwards)."""
        n_res = self.resident_layers
        return layer if layer < n_res else n_res + (layer - n_res) % self.stream_slots

    def kv_index(self, layer: int) -> int:
        """Which block of its region's KV cache and norm gains is ``layer``'s."""
        n_res = self.resident_layers
        return 0 if layer < n_res else (layer - n_res) // self.stream_slots

    def region_layers(self, region: int) -> tuple[int, ...]:
        """The layers that run in ``region``, in order (one for a resident region)."""
        return tuple(l for l in range(self.config.n_layers) if self.region(l) == region)

    # ---- geometry ----
    @property
    def root_x(self) -> int:
        """The home column: where row reductions end and row broadcasts start."""
        return (self.W - 1) // 2

    @property
    def group(self) -> int:
        """Query heads per KV head (``G``)."""
        return self.config.group_size

    @property
    def kv_capacity(self) -> int:
        """Positions the KV cache holds per sequence."""
        return self.slots * self.W

    def col_block(self, c: int) -> slice:
        """Hidden-size block of column ``c``."""
        return block_slice(self.config.hidden_size, self.W, c)

    def ffn_block(self, r: int) -> slice:
        """FFN block of row ``r``."""
        return block_slice(self.config.ffn_size, self.H, r)

    def vocab_block(self, r: int) -> slice:
        """Vocabulary block of head-region row ``r``."""
        return block_slice(self.config.vocab_size, self.H_head, r)

    def kv_slot(self, position: int) -> tuple[int, int]:
        """``(column, slot)`` holding ``position`` in every attention row."""
        return position % self.W, position // self.W

    def kv_used(self, c: int, length: int) -> int:
        """Slots of column ``c`` in use when ``length`` positions are cached."""
        return 0 if length <= c else (length - 1 - c) // self.W + 1

    # ---- tile shapes (m outputs x n inputs) of PE (c, r) ----
    def _dblk(self, c: int) -> int:
        return block_len(self.config.hidden_size, self.W, c)

    def _fblk(self, r: int) -> int:
        return block_len(self.config.ffn_size, self.H, r)

    def qkv_tile(self, c: int, r: int) -> tuple[int, int]:
        if r >= self.config.n_kv_heads:
            return 0, 0
        return (self.group + 2) * self.config.head_dim, self._dblk(c)

    def o_tile(self, c: int, r: int) -> tuple[int, int]:
        if r >= self.config.n_kv_heads:
            return 0, 0
        return self._dblk(c), self.group * self.config.head_dim

    def gate_up_tile(self, c: int, r: int) -> tuple[int, int]:
        return 2 * self._fblk(r), self._dblk(c)

    def down_tile(self, c: int, r: int) -> tuple[int, int]:
        return self._dblk(c), self._fblk(r)

    def head_tile(self, c: int, r: int) -> tuple[int, int]:
        return block_len(self.config.vocab_size, self.H_head, r), self._dblk(c)

    # ---- the rows of each weight matrix (in y = W x orientation) a tile takes ----
    def qkv_rows(self, g: int) -> tuple[tuple[str, slice], ...]:
        """Rows of ``W_q``, ``W_k``, ``W_v`` (out x in) that make row ``g``'s outputs, in order."""
        d, G = self.config.head_dim, self.group
        return (("q", slice(g * G * d, (g + 1) * G * d)),
                ("k", slice(g * d, (g + 1) * d)),
                ("v", slice(g * d, (g + 1) * d)))

    def o_cols(self, g: int) -> slice:
        """Which columns of ``W_o`` (out x in) row ``g``'s O tiles take."""
        d, G = self.config.head_dim, self.group
        return slice(g * G * d, (g + 1) * G * d)

    # ---- the decode program's per-PE roles ----
    def pe_roles(self, x: int, y: int) -> dict[str, int | bool]:
        """The scalar fields of the ``p`` struct ``csl/llama_decode/layout.csl`` gives PE
        ``(x, y)`` of the program rectangle (sizes and roles; colors left out): what decides
        which of ``pe.csl``'s code the PE compiles."""
        c = self.config
        region, r = divmod(y, self.H)
        head = region >= self.regions
        if head:
            region, r = self.regions, y - self.head_row
        rows = self.H_head if head else self.H
        n_res, n_slots = self.resident_layers, self.stream_slots
        slot = not head and region >= n_res
        last_slot = (c.n_layers - n_res - 1) % n_slots if n_slots else 0
        attn = not head and r < c.n_kv_heads
        rx = self.root_x
        return {
            "L": c.n_layers, "D": c.hidden_size, "F": c.ffn_size, "H_kv": c.n_kv_heads,
            "G": c.group_size, "d": c.head_dim, "V": c.vocab_size,
            "W": self.W, "H": self.H, "H_head": self.H_head, "S": self.slots,
            "head": head, "first": region == 0, "streamed": slot,
            "n_inst": 1 if head else len(self.region_layers(region)),
            "to_head": slot and region - n_res == last_slot,
            "attn": attn, "top": r == 0, "attn_last": attn and r + 1 == c.n_kv_heads,
            "last": r + 1 == rows, "home_col": x == rx,
            "dblk": block_len(c.hidden_size, self.W, x),
            "fblk": 1 if head else block_len(c.ffn_size, self.H, r),
            "vblk": block_len(c.vocab_size, self.H_head, r) if head else 1,
            "vstart": block_start(c.vocab_size, self.H_head, r) if head and x == rx else 0,
            "row_lo": 0 < x <= rx, "row_hi": rx <= x and x + 1 < self.W,
        }
