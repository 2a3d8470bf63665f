"""A consumer of a BPF ring buffer map, reading its memory mapping directly.

BCC's ring_buffer_consume() calls back into Python through ctypes for every
record, which costs about 2 µs each: more than decoding and writing the
record. Here the mapping is handed to the consumer (span(), publish()),
which walks the records in one plain loop (recorder/record.py,
Dispatcher.drain).

Layout (kernel/bpf/ringbuf.c): page 0 holds the consumer position (ours to
write), page 1 the producer position, then the data pages, mapped twice in a
row so that a record that wraps around is contiguous. Each record has an
8-byte header: u32 length with BUSY (bit 31: not committed yet) and DISCARD
(bit 30) flags, u32 page offset; records are 8-byte aligned. Positions only
grow; the data offset is position & (size - 1).

The positions are 8-byte words shared with the kernel, so they are read and
written through memoryview.cast("Q"): one aligned 8-byte load or store each.
struct.pack_into writes its bytes one at a time, and the kernel could then
read a half-written consumer position, far behind the real one, and refuse a
record for want of space (we saw a few losses per run at any rate that way).
The kernel publishes with release semantics and this reader relies on x86's
ordered loads (the producer position is read before the headers).
"""

from __future__ import annotations

import mmap

BUSY = 1 << 31
DISCARD = 1 << 30
HEADER = 8


class RingReader:
    def __init__(self, map_fd: int, size: int) -> None:
        if size <= 0 or size & (size - 1) or size % mmap.PAGESIZE:
            raise ValueError(f"ring size {size} is not a power of two of pages")
        page = mmap.PAGESIZE
        self.size = size
        self._page = page
        self._cons = mmap.mmap(map_fd, page, mmap.MAP_SHARED,
                               mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        self._data = mmap.mmap(map_fd, page + 2 * size, mmap.MAP_SHARED,
                               mmap.PROT_READ, offset=page)
        self._view = memoryview(self._data)
        self._cons_word = memoryview(self._cons).cast("Q")
        self._prod_word = self._view[:8].cast("Q")

    def span(self, max_bytes: int) -> tuple[memoryview, int, int, int, int]:
        """For a consumer that walks the records itself, as drain() does but
        without a call per record (record.Dispatcher.drain): the mapping, the
        offset of the data pages in it, the position mask, and the positions
        between which records lie (at most about max_bytes; a record there
        may still be BUSY). publish() how far it got."""
        cons = self._cons_word[0]
        return (self._view, self._page, self.size - 1, cons,
                min(self._prod_word[0], cons + max_bytes))

    def publish(self, pos: int) -> None:
        """Gives the ring's space up to pos back to the producers."""
        self._cons_word[0] = pos

    def pending(self) -> bool:
        """Whether the kernel has written past what drain() has consumed."""
        return bool(self._prod_word[0] > self._cons_word[0])

    def close(self) -> None:
        self._cons_word.release()
        self._prod_word.release()
        self._view.release()
        self._data.close()
        self._cons.close()
