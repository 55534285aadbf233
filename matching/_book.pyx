# cython: annotation_typing=False, binding=False
# annotation_typing=False: annotations on the def methods are documentation for readers and
# embedsignature; the exact argument types are checked by hand below so that the errors match the
# reference book.
# binding=False: methods are plain C methods rather than CyFunctions. A bound C method is called
# without re-packing its arguments behind ``self`` (a CyFunction bound method allocates a new
# argument array when called with more than four arguments), which measured ~12 ns less per call.
"""The compiled order book: one price-time-priority book per instrument, integers only.

Behaviour is exactly the contract in ``matching/constants.py`` (the same as
``matching.reference.OrderBook``, which is the test oracle); the data structures are declared and
explained in ``_book.pxd``, the design and the measurements in ``docs/ENGINE.md``.

Why it is fast through the Python-callable API: arguments are read with one exact-type check and
one C conversion each; orders, levels and the id table are C structs (no Python object per
order); the common "rests without trading" path builds exactly one list and one tuple and reuses
the caller's argument objects inside it; event kinds and reasons are prebuilt Python ints.
"""

cimport cython
from cpython.long cimport PyLong_AsLongLongAndOverflow, PyLong_CheckExact
from cpython.mem cimport PyMem_Calloc, PyMem_Free, PyMem_Malloc
from libc.stdint cimport int64_t, uint64_t

cdef extern from *:
    # GCC/Clang builtin: a hint to start loading a cache line; no effect on results.
    void __builtin_prefetch(const void* address) noexcept nogil

import hashlib
import os

from matching import constants as _contract
from matching.constants import IntegrityError


# C values of the contract's enumerations (checked against matching.constants at import below).
cdef enum:
    BUY = 0
    SELL = 1
    GTC = 0
    DAY = 1
    IOC = 2
    FOK = 3
    CANCEL_TAKER = 0
    CANCEL_MAKER = 1
    CANCEL_BOTH = 2

cdef int64_t MAX_INT64 = 0x7FFFFFFFFFFFFFFF
# The smallest id table; it doubles whenever it would become more than half full.
cdef uint64_t MIN_ID_CAPACITY = 1024
# Freed orders and levels are kept for reuse up to these counts, then given back to PyMem.
cdef Py_ssize_t FREE_ORDER_LIMIT = 65536
cdef Py_ssize_t FREE_LEVEL_LIMIT = 4096
# Bytes per order in state_hash(): struct.pack("<BqqqqBBB", ...).
cdef Py_ssize_t HASH_RECORD_SIZE = 36

for _name, _value in (
    ("BUY", BUY), ("SELL", SELL), ("GTC", GTC), ("DAY", DAY), ("IOC", IOC), ("FOK", FOK),
    ("CANCEL_TAKER", CANCEL_TAKER), ("CANCEL_MAKER", CANCEL_MAKER), ("CANCEL_BOTH", CANCEL_BOTH),
    ("MAX_INT64", MAX_INT64),
):
    if getattr(_contract, _name) != _value:
        raise ImportError(f"matching._book disagrees with matching.constants on {_name}")
del _name, _value

# Event kinds and reasons as Python int objects built once: an event tuple takes a reference to
# one of these instead of converting a C int on every event.
cdef object _FILL = _contract.FILL
cdef object _RESTED = _contract.RESTED
cdef object _FILLED = _contract.FILLED
cdef object _CANCELLED = _contract.CANCELLED
cdef object _REJECTED = _contract.REJECTED
cdef object _REPLACED = _contract.REPLACED
cdef object _USER_CANCEL = _contract.USER_CANCEL
cdef object _IOC_REMAINDER = _contract.IOC_REMAINDER
cdef object _FOK_UNFILLABLE = _contract.FOK_UNFILLABLE
cdef object _SELF_TRADE = _contract.SELF_TRADE
cdef object _EXPIRED = _contract.EXPIRED
cdef object _POST_ONLY_WOULD_CROSS = _contract.POST_ONLY_WOULD_CROSS
cdef object _DUPLICATE_ID = _contract.DUPLICATE_ID
cdef object _UNKNOWN_ID = _contract.UNKNOWN_ID
cdef object _BAD_PRICE = _contract.BAD_PRICE
cdef object _BAD_QTY = _contract.BAD_QTY
cdef object _BAD_PARAMETER = _contract.BAD_PARAMETER
cdef object _KEPT_PRIORITY = 1
cdef object _LOST_PRIORITY = 0


# ------------------------------------------------------------------------------ helpers

cdef inline int _read_int64(object value, int64_t* out, str name) except -1:
    """Read an exact ``int`` argument: 1 if it fits int64 (stored in ``out``), 0 if it does not.

    A value that is not exactly ``int`` is a programmer error (TypeError). An int beyond int64 is
    not an error here: the caller turns it into a range rejection, as for any out-of-range int.
    """
    cdef int overflow = 0
    if not PyLong_CheckExact(value):
        raise TypeError(f"{name} must be int, not {type(value).__name__}")
    out[0] = PyLong_AsLongLongAndOverflow(value, &overflow)
    return overflow == 0


cdef inline uint64_t _home_slot(int64_t order_id, int shift) noexcept:
    # Fibonacci hashing: multiply by 2**64/phi and keep the top bits. Sequential ids (the usual
    # case) spread evenly, so linear probing chains stay short.
    return (<uint64_t>order_id * <uint64_t>0x9E3779B97F4A7C15) >> shift


cdef inline object _uint128_to_int(uint128 value):
    """Exact Python int of a 128-bit level total (Cython would truncate it to 64 bits)."""
    cdef uint64_t high = <uint64_t>(value >> 64)
    cdef uint64_t low = <uint64_t>value
    if high == 0:
        return low
    return (<object>high << 64) | low


cdef inline void _put_le(unsigned char* out, uint64_t value, int width) noexcept:
    """Write ``width`` bytes of ``value`` little-endian (the state_hash byte format)."""
    cdef int index
    for index in range(width):
        out[index] = <unsigned char>(value & 0xFF)
        value >>= 8


cdef inline void _detach(RestingOrder* order) noexcept:
    """Unlink ``order`` from its level's FIFO and totals (the level may become empty)."""
    cdef PriceLevel* level = order.level
    if order.prev == NULL:
        level.head = order.next
    else:
        order.prev.next = order.next
    if order.next == NULL:
        level.tail = order.prev
    else:
        order.next.prev = order.prev
    level.order_count -= 1
    level.total_qty -= <uint128>order.qty


# Price levels of one side form a treap (a binary search tree on sort_key that is also a heap on
# random priorities, so its expected depth is O(log n) whatever prices arrive) for finding,
# inserting and removing a level, plus a doubly linked list in price order (``better``/``worse``)
# with a pointer to the best level, for O(1) access to the best and best-first walks.

cdef PriceLevel* _treap_find(PriceLevel* node, int64_t sort_key, PriceLevel** worse_neighbour,
                             PriceLevel** better_neighbour) noexcept:
    """The level with ``sort_key``, or NULL and the levels just below and above where it would go."""
    worse_neighbour[0] = NULL
    better_neighbour[0] = NULL
    while node != NULL:
        if sort_key == node.sort_key:
            return node
        if sort_key < node.sort_key:
            better_neighbour[0] = node
            node = node.left
        else:
            worse_neighbour[0] = node
            node = node.right
    return NULL


cdef void _treap_split(PriceLevel* node, int64_t sort_key, PriceLevel** smaller,
                       PriceLevel** larger) noexcept:
    """Split the treap at ``node`` (``sort_key`` absent) into keys below and above ``sort_key``."""
    if node == NULL:
        smaller[0] = NULL
        larger[0] = NULL
    elif node.sort_key < sort_key:
        _treap_split(node.right, sort_key, &node.right, larger)
        smaller[0] = node
    else:
        _treap_split(node.left, sort_key, smaller, &node.left)
        larger[0] = node


cdef PriceLevel* _treap_insert(PriceLevel* node, PriceLevel* level) noexcept:
    """The treap at ``node`` with ``level`` (a new key, children NULL) added; returns the root."""
    if node == NULL:
        return level
    if level.priority > node.priority:
        _treap_split(node, level.sort_key, &level.left, &level.right)
        return level
    if level.sort_key < node.sort_key:
        node.left = _treap_insert(node.left, level)
    else:
        node.right = _treap_insert(node.right, level)
    return node


cdef PriceLevel* _treap_merge(PriceLevel* smaller, PriceLevel* larger) noexcept:
    """Join two treaps, every key of ``smaller`` below every key of ``larger``."""
    if smaller == NULL:
        return larger
    if larger == NULL:
        return smaller
    if smaller.priority > larger.priority:
        smaller.right = _treap_merge(smaller.right, larger)
        return smaller
    larger.left = _treap_merge(smaller, larger.left)
    return larger


cdef PriceLevel* _treap_remove(PriceLevel* node, PriceLevel* level) noexcept:
    """The treap at ``node`` (which holds ``level``) without ``level``; returns the root."""
    if node == level:
        return _treap_merge(level.left, level.right)
    if level.sort_key < node.sort_key:
        node.left = _treap_remove(node.left, level)
    else:
        node.right = _treap_remove(node.right, level)
    return node


cdef Py_ssize_t _treap_check(PriceLevel* node, PriceLevel** in_order) except -1:
    """Check BST order and heap priorities below ``node`` against the price-order list.

    ``in_order`` walks the list from the worst level up as the tree is visited in order, so the
    tree and the list must hold exactly the same levels in the same order. Returns the node count.
    """
    cdef Py_ssize_t count = 0
    if node == NULL:
        return 0
    if node.left != NULL and node.left.priority > node.priority:
        raise IntegrityError(f"level {node.price}: treap heap order broken (left)")
    if node.right != NULL and node.right.priority > node.priority:
        raise IntegrityError(f"level {node.price}: treap heap order broken (right)")
    count += _treap_check(node.left, in_order)
    if in_order[0] != node:
        raise IntegrityError(f"level {node.price}: the tree and the price list disagree")
    in_order[0] = node.better
    count += 1
    count += _treap_check(node.right, in_order)
    return count


# ------------------------------------------------------------------------------ the book

@cython.auto_pickle(False)
cdef class OrderBook:
    """A price-time-priority book for one instrument: integers in, event tuples out.

    See ``matching/constants.py`` for the contract; all commands return a list of event tuples.
    """

    def __cinit__(self):
        self.id_slots = <IdSlot*>PyMem_Calloc(MIN_ID_CAPACITY, sizeof(IdSlot))
        if self.id_slots == NULL:
            raise MemoryError()
        self.id_mask = MIN_ID_CAPACITY - 1
        self.id_shift = 64 - 10  # log2(MIN_ID_CAPACITY) == 10
        # Treap priorities: an unpredictable seed, so no price sequence can be chosen to make a
        # deep tree. It changes only the tree's shape, never the book's behaviour.
        self.priority_state = int.from_bytes(os.urandom(8), "little") | 1

    def __dealloc__(self):
        cdef BookSide* book_side
        cdef int side_number
        cdef PriceLevel* level
        cdef RestingOrder* order
        cdef RestingOrder* next_order
        cdef PriceLevel* next_level
        for side_number in range(2):
            book_side = &self.bids if side_number == BUY else &self.asks
            level = book_side.best
            while level != NULL:
                order = level.head
                while order != NULL:
                    next_order = order.next
                    PyMem_Free(order)
                    order = next_order
                next_level = level.worse
                PyMem_Free(level)
                level = next_level
        order = self.free_orders
        while order != NULL:
            next_order = order.next
            PyMem_Free(order)
            order = next_order
        level = self.free_levels
        while level != NULL:
            next_level = level.worse
            PyMem_Free(level)
            level = next_level
        PyMem_Free(self.id_slots)

    # -------------------------------------------------------------------------- commands

    def submit(self, order_id: int, side: int, price: int, qty: int, tif: int = GTC,
               owner: int = 0, post_only: bool = False,
               stp: int = CANCEL_TAKER) -> list[tuple[int, ...]]:
        """Submit a new order; returns its events. Checks run in the contract's order."""
        cdef int64_t c_order_id = 0, c_side = 0, c_price = 0, c_qty = 0
        cdef int64_t c_tif = 0, c_owner = 0, c_stp = 0
        cdef int id_fits = _read_int64(order_id, &c_order_id, "order_id")
        cdef int side_fits, price_fits, qty_fits, tif_fits, owner_fits, stp_fits
        cdef list events
        # Start loading the id's table slot now; reading the other arguments hides the miss.
        __builtin_prefetch(&self.id_slots[_home_slot(c_order_id, self.id_shift)])
        side_fits = _read_int64(side, &c_side, "side")
        price_fits = _read_int64(price, &c_price, "price")
        qty_fits = _read_int64(qty, &c_qty, "qty")
        tif_fits = _read_int64(tif, &c_tif, "tif")
        owner_fits = _read_int64(owner, &c_owner, "owner")
        stp_fits = _read_int64(stp, &c_stp, "stp")
        if post_only is not True and post_only is not False:
            raise TypeError(f"post_only must be bool, not {type(post_only).__name__}")

        if not id_fits or c_order_id < 1:
            return [(_REJECTED, order_id, _BAD_PARAMETER)]
        if self._find(c_order_id) != NULL:
            return [(_REJECTED, order_id, _DUPLICATE_ID)]
        if (not (side_fits and tif_fits and stp_fits and owner_fits)
                or c_side < BUY or c_side > SELL or c_tif < GTC or c_tif > FOK
                or c_stp < CANCEL_TAKER or c_stp > CANCEL_BOTH or c_owner < 0):
            return [(_REJECTED, order_id, _BAD_PARAMETER)]
        if not price_fits or c_price < 1:
            return [(_REJECTED, order_id, _BAD_PRICE)]
        if not qty_fits or c_qty < 1:
            return [(_REJECTED, order_id, _BAD_QTY)]

        if not self._crosses_opposite(<int>c_side, c_price):
            # The hot passive path: nothing to match, so the order rests (or is cancelled).
            if c_tif == IOC:
                return [(_CANCELLED, order_id, _IOC_REMAINDER, qty)]
            if c_tif == FOK:
                return [(_CANCELLED, order_id, _FOK_UNFILLABLE, qty)]
            self._rest(c_order_id, <int>c_side, c_price, c_qty, <int>c_tif, c_owner, <int>c_stp,
                       post_only is True)
            return [(_RESTED, order_id, price, qty)]

        if post_only is True:
            return [(_REJECTED, order_id, _POST_ONLY_WOULD_CROSS)]
        if c_tif == FOK and not self._fok_fillable(<int>c_side, c_price, c_qty, c_owner,
                                                   <int>c_stp):
            return [(_CANCELLED, order_id, _FOK_UNFILLABLE, qty)]
        events = []
        self._match_then_finish(events, order_id, c_order_id, <int>c_side, c_price, c_qty,
                                <int>c_tif, c_owner, <int>c_stp, 0)
        return events

    def cancel(self, order_id: int) -> list[tuple[int, ...]]:
        """Remove a resting order; an id not resting (of any value) is UNKNOWN_ID."""
        cdef int64_t c_order_id = 0
        cdef RestingOrder* order = NULL
        cdef int64_t remaining
        if _read_int64(order_id, &c_order_id, "order_id"):
            order = self._find(c_order_id)
        if order == NULL:
            return [(_REJECTED, order_id, _UNKNOWN_ID)]
        remaining = order.qty
        self._remove(order)
        return [(_CANCELLED, order_id, _USER_CANCEL, remaining)]

    def replace(self, order_id: int, price: int, qty: int) -> list[tuple[int, ...]]:
        """Change a resting order's price and/or remaining quantity.

        A same-price decrease (or no change) keeps time priority; anything else takes the order
        out and matches it again like a fresh submit with its own tif/owner/post_only/stp.
        """
        cdef int64_t c_order_id = 0, c_price = 0, c_qty = 0
        cdef int id_fits = _read_int64(order_id, &c_order_id, "order_id")
        cdef int price_fits = _read_int64(price, &c_price, "price")
        cdef int qty_fits = _read_int64(qty, &c_qty, "qty")
        cdef RestingOrder* order = NULL
        cdef int side, tif, stp, post_only
        cdef int64_t owner
        cdef list events
        if id_fits:
            order = self._find(c_order_id)
        if order == NULL:
            return [(_REJECTED, order_id, _UNKNOWN_ID)]
        if not price_fits or c_price < 1:
            return [(_REJECTED, order_id, _BAD_PRICE)]
        if not qty_fits or c_qty < 1:
            return [(_REJECTED, order_id, _BAD_QTY)]

        if c_price == order.price and c_qty <= order.qty:
            order.level.total_qty -= <uint128>(order.qty - c_qty)
            order.qty = c_qty
            return [(_REPLACED, order_id, price, qty, _KEPT_PRIORITY)]
        side = order.side
        if order.post_only and self._crosses_opposite(side, c_price):
            return [(_REJECTED, order_id, _POST_ONLY_WOULD_CROSS)]

        tif = order.tif
        owner = order.owner
        stp = order.stp
        post_only = order.post_only
        self._remove(order)
        if not self._crosses_opposite(side, c_price):
            self._rest(c_order_id, side, c_price, c_qty, tif, owner, stp, post_only)
            return [(_REPLACED, order_id, price, qty, _LOST_PRIORITY),
                    (_RESTED, order_id, price, qty)]
        events = [(_REPLACED, order_id, price, qty, _LOST_PRIORITY)]
        self._match_then_finish(events, order_id, c_order_id, side, c_price, c_qty, tif, owner,
                                stp, post_only)
        return events

    def expire_day(self) -> list[tuple[int, ...]]:
        """End of session: remove every resting DAY order, in canonical order."""
        cdef Py_ssize_t count = 0
        cdef Py_ssize_t index
        cdef RestingOrder* expiring = self._canonical_copies(True, &count)
        cdef list events
        # Pure C from the copy to the last removal (no Python object is created in between), so
        # every copied order is still resting when it is removed.
        for index in range(count):
            self._remove(self._find(expiring[index].order_id))
        try:
            events = []
            for index in range(count):
                events.append((_CANCELLED, expiring[index].order_id, _EXPIRED,
                               expiring[index].qty))
        finally:
            PyMem_Free(expiring)
        return events

    # -------------------------------------------------------------------------- queries

    def best_bid(self) -> int | None:
        """Highest resting buy price, or None when there are no bids."""
        if self.bids.best == NULL:
            return None
        return self.bids.best.price

    def best_ask(self) -> int | None:
        """Lowest resting sell price, or None when there are no asks."""
        if self.asks.best == NULL:
            return None
        return self.asks.best.price

    def depth(self, levels: int) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
        """``(bids, asks)``: up to ``levels`` ``(price, total_qty, order_count)`` each, best first.

        ``levels`` <= 0 gives two empty lists. Totals are exact Python ints (no overflow).
        """
        cdef int64_t wanted = 0
        cdef BookSide* book_side
        cdef int side_number
        cdef PriceLevel* level
        cdef PriceLevel* copies
        cdef Py_ssize_t count
        cdef Py_ssize_t index
        cdef list rows
        cdef list result = []
        if not _read_int64(levels, &wanted, "levels"):
            wanted = MAX_INT64 if levels > 0 else 0
        if wanted <= 0:
            return [], []
        for side_number in range(2):
            book_side = &self.bids if side_number == BUY else &self.asks
            count = book_side.count if book_side.count < wanted else <Py_ssize_t>wanted
            # Copy first, build Python objects after (see _canonical_copies for why).
            copies = <PriceLevel*>PyMem_Malloc((count + 1) * sizeof(PriceLevel))
            if copies == NULL:
                raise MemoryError()
            level = book_side.best
            for index in range(count):
                copies[index] = level[0]
                level = level.worse
            rows = []
            try:
                for index in range(count):
                    rows.append((copies[index].price, _uint128_to_int(copies[index].total_qty),
                                 copies[index].order_count))
            finally:
                PyMem_Free(copies)
            result.append(rows)
        return result[0], result[1]

    def get(self, order_id: int) -> tuple[int, int, int, int, int, int, bool] | None:
        """``(side, price, qty, owner, tif, stp, post_only)`` of a resting order, else None."""
        cdef int64_t c_order_id = 0
        cdef RestingOrder* order = NULL
        cdef RestingOrder view
        if _read_int64(order_id, &c_order_id, "order_id"):
            order = self._find(c_order_id)
        if order == NULL:
            return None
        view = order[0]  # a copy: building the tuple must not read the book
        return (view.side, view.price, view.qty, view.owner, view.tif, view.stp,
                view.post_only == 1)

    def __len__(self) -> int:
        return self.resting_count

    def __repr__(self) -> str:
        return (f"<compiled OrderBook orders={self.resting_count} "
                f"best_bid={self.best_bid()} best_ask={self.best_ask()}>")

    # -------------------------------------------------------------------------- integrity, state

    def validate(self) -> None:
        """Check every invariant; raise ``IntegrityError`` naming the first one broken.

        Levels: the price list strictly ordered from the best, its links consistent, the treap
        holding exactly the same levels in the same order with heap-ordered priorities, keys
        correct, none empty, count and 128-bit total equal to their orders. FIFO: consistent prev/next links, head and tail, every
        order pointing at its level with its side and price and in-range fields. Id table: every
        occupied slot reachable by probing and holding the order with that id; exactly the
        resting orders, no more. Book: not crossed.
        """
        cdef Py_ssize_t level_orders
        cdef Py_ssize_t occupied = 0
        cdef uint64_t index
        cdef IdSlot* slot
        level_orders = self._validate_side(&self.bids, BUY)
        level_orders += self._validate_side(&self.asks, SELL)
        for index in range(self.id_mask + 1):
            slot = &self.id_slots[index]
            if slot.order_id == 0:
                if slot.order != NULL:
                    raise IntegrityError(f"empty id slot {index} holds an order pointer")
                continue
            occupied += 1
            if slot.order == NULL or slot.order.order_id != slot.order_id:
                raise IntegrityError(f"id slot {index} does not hold order {slot.order_id}")
            if self._find(slot.order_id) != slot.order:
                raise IntegrityError(f"order {slot.order_id} is not reachable in the id table")
        if occupied != self.resting_count or level_orders != self.resting_count:
            raise IntegrityError(
                f"order counts disagree: id table {occupied}, counter {self.resting_count}, "
                f"levels {level_orders}")
        if 2 * self.resting_count > <Py_ssize_t>(self.id_mask + 1):
            raise IntegrityError("id table more than half full")
        if (self.bids.best != NULL and self.asks.best != NULL
                and self.bids.best.price >= self.asks.best.price):
            raise IntegrityError(f"book is crossed: best bid {self.best_bid()} >= "
                                 f"best ask {self.best_ask()}")

    def state_hash(self) -> str:
        """Lowercase hex SHA-256 over the canonical-order records (contract byte format)."""
        cdef bytearray records = bytearray(self.resting_count * HASH_RECORD_SIZE)
        cdef unsigned char* out = records
        cdef BookSide* book_side
        cdef int side_number
        cdef RestingOrder* order
        cdef PriceLevel* level
        for side_number in range(2):
            book_side = &self.bids if side_number == BUY else &self.asks
            level = book_side.best
            while level != NULL:
                order = level.head
                while order != NULL:
                    out[0] = order.side
                    _put_le(out + 1, <uint64_t>order.order_id, 8)
                    _put_le(out + 9, <uint64_t>order.price, 8)
                    _put_le(out + 17, <uint64_t>order.qty, 8)
                    _put_le(out + 25, <uint64_t>order.owner, 8)
                    out[33] = order.tif
                    out[34] = order.stp
                    out[35] = order.post_only
                    out += HASH_RECORD_SIZE
                    order = order.next
                level = level.worse
        return hashlib.sha256(records).hexdigest()

    def snapshot(self) -> list[tuple[int, int, int, int, int, int, int, int]]:
        """``(side, order_id, price, qty, owner, tif, stp, post_only 0/1)`` in canonical order."""
        cdef Py_ssize_t count = 0
        cdef Py_ssize_t index
        cdef RestingOrder* copies = self._canonical_copies(False, &count)
        cdef RestingOrder* order
        cdef list entries = []
        try:
            for index in range(count):
                order = &copies[index]
                entries.append((order.side, order.order_id, order.price, order.qty,
                                order.owner, order.tif, order.stp, order.post_only))
        finally:
            PyMem_Free(copies)
        return entries

    @classmethod
    def restore(cls, data) -> OrderBook:
        """Rebuild the book a ``snapshot()`` describes, time priority included.

        Entries are inserted in the order given, so FIFO within a level follows the list. Raises
        ``TypeError`` for non-int fields and ``ValueError`` for a malformed entry, an out-of-range
        value, a duplicate id, a tif that cannot rest, or a crossed result.
        """
        cdef OrderBook book = cls()
        cdef tuple fields
        cdef int64_t values[7]
        cdef int fits
        cdef int position
        cdef object post_only
        for entry in data:
            fields = tuple(entry)
            if len(fields) != 8:
                raise ValueError(f"snapshot entry must have 8 fields, got {len(fields)}")
            fits = 1
            for position, name in enumerate(
                    ("side", "order_id", "price", "qty", "owner", "tif", "stp")):
                fits &= _read_int64(fields[position], &values[position], name)
            post_only = fields[7]
            if type(post_only) is not int and type(post_only) is not bool:
                raise TypeError(f"post_only must be 0/1, not {type(post_only).__name__}")
            # values: side, order_id, price, qty, owner, tif, stp
            if (not fits or values[0] < BUY or values[0] > SELL or values[1] < 1
                    or values[2] < 1 or values[3] < 1 or values[4] < 0
                    or values[5] < GTC or values[5] > DAY
                    or values[6] < CANCEL_TAKER or values[6] > CANCEL_BOTH
                    or (post_only != 0 and post_only != 1)):
                raise ValueError(f"snapshot entry out of range: {fields!r}")
            if book._find(values[1]) != NULL:
                raise ValueError(f"snapshot repeats order id {values[1]}")
            book._rest(values[1], <int>values[0], values[2], values[3], <int>values[5],
                       values[4], <int>values[6], post_only == 1)
        if (book.bids.best != NULL and book.asks.best != NULL
                and book.bids.best.price >= book.asks.best.price):
            raise ValueError(f"snapshot is crossed: best bid {book.best_bid()} >= "
                             f"best ask {book.best_ask()}")
        book.validate()
        return book

    # -------------------------------------------------------------------------- id table

    cdef RestingOrder* _find(self, int64_t order_id) noexcept:
        """The resting order with ``order_id``, or NULL (any int64 may be asked for)."""
        cdef uint64_t index = _home_slot(order_id, self.id_shift)
        cdef IdSlot* slot
        while True:
            slot = &self.id_slots[index]
            if slot.order_id == order_id:
                return slot.order  # NULL for order_id 0, which marks empty slots
            if slot.order_id == 0:
                return NULL
            index = (index + 1) & self.id_mask

    cdef int _reserve_id_slot(self) except -1:
        """Make room for one more id (load factor <= 1/2) before anything else changes."""
        if 2 * (self.resting_count + 1) > <Py_ssize_t>(self.id_mask + 1):
            self._resize_id_table(2 * (self.id_mask + 1))
        return 0

    cdef void _insert_id(self, RestingOrder* order) noexcept:
        """Add ``order`` (its id not present; a slot reserved by ``_reserve_id_slot``)."""
        cdef uint64_t index = _home_slot(order.order_id, self.id_shift)
        while self.id_slots[index].order_id != 0:
            index = (index + 1) & self.id_mask
        self.id_slots[index].order_id = order.order_id
        self.id_slots[index].order = order
        self.resting_count += 1

    cdef void _remove_id(self, int64_t order_id) noexcept:
        """Remove a present id by backward-shift deletion (no tombstones, probes stay short)."""
        cdef uint64_t mask = self.id_mask
        cdef uint64_t hole = _home_slot(order_id, self.id_shift)
        cdef uint64_t index
        cdef uint64_t home
        while self.id_slots[hole].order_id != order_id:
            hole = (hole + 1) & mask
        index = hole
        while True:
            index = (index + 1) & mask
            if self.id_slots[index].order_id == 0:
                break
            home = _home_slot(self.id_slots[index].order_id, self.id_shift)
            # The entry at ``index`` may move into the hole only if its home slot is not in the
            # cyclic range (hole, index]; otherwise moving it would put it before its home.
            if ((index - home) & mask) >= ((index - hole) & mask):
                self.id_slots[hole] = self.id_slots[index]
                hole = index
        self.id_slots[hole].order_id = 0
        self.id_slots[hole].order = NULL
        self.resting_count -= 1

    cdef int _resize_id_table(self, uint64_t capacity) except -1:
        """Rehash into a table of ``capacity`` slots (a power of two)."""
        cdef IdSlot* old_slots = self.id_slots
        cdef uint64_t old_capacity = self.id_mask + 1
        cdef IdSlot* new_slots = <IdSlot*>PyMem_Calloc(capacity, sizeof(IdSlot))
        cdef uint64_t index
        cdef uint64_t bits = 0
        if new_slots == NULL:
            raise MemoryError()
        while (<uint64_t>1 << bits) < capacity:
            bits += 1
        self.id_slots = new_slots
        self.id_mask = capacity - 1
        self.id_shift = <int>(64 - bits)
        self.resting_count = 0
        for index in range(old_capacity):
            if old_slots[index].order_id != 0:
                self._insert_id(old_slots[index].order)
        PyMem_Free(old_slots)
        return 0

    # -------------------------------------------------------------------------- allocation

    cdef int _reserve_order(self) except -1:
        """Make sure one order struct is ready to take, before anything else changes."""
        cdef RestingOrder* order
        if self.free_orders == NULL:
            order = <RestingOrder*>PyMem_Malloc(sizeof(RestingOrder))
            if order == NULL:
                raise MemoryError()
            order.next = NULL
            self.free_orders = order
            self.free_order_count = 1
        return 0

    cdef RestingOrder* _take_order(self) noexcept:
        """Pop the order struct ``_reserve_order`` guaranteed."""
        cdef RestingOrder* order = self.free_orders
        self.free_orders = order.next
        self.free_order_count -= 1
        return order

    cdef void _release_order(self, RestingOrder* order) noexcept:
        if self.free_order_count >= FREE_ORDER_LIMIT:
            PyMem_Free(order)
            return
        order.next = self.free_orders
        self.free_orders = order
        self.free_order_count += 1

    cdef PriceLevel* _allocate_level(self) except NULL:
        cdef PriceLevel* level = self.free_levels
        if level != NULL:
            self.free_levels = level.worse
            self.free_level_count -= 1
            return level
        level = <PriceLevel*>PyMem_Malloc(sizeof(PriceLevel))
        if level == NULL:
            raise MemoryError()
        return level

    cdef void _release_level(self, PriceLevel* level) noexcept:
        if self.free_level_count >= FREE_LEVEL_LIMIT:
            PyMem_Free(level)
            return
        level.worse = self.free_levels  # the freelist link
        self.free_levels = level
        self.free_level_count += 1

    # -------------------------------------------------------------------------- price levels

    cdef PriceLevel* _level_for_rest(self, BookSide* book_side, int side,
                                     int64_t price) except NULL:
        """The level at ``price`` on ``book_side``, created (empty) in its place if absent.

        Raises MemoryError with the book unchanged if a new level cannot be allocated.
        """
        cdef int64_t sort_key = price if side == BUY else -price
        cdef PriceLevel* best = book_side.best
        cdef PriceLevel* worse = NULL
        cdef PriceLevel* better = NULL
        cdef PriceLevel* level
        if best == NULL or sort_key > best.sort_key:  # a new best level: no search needed
            worse = best
            better = NULL
        elif sort_key == best.sort_key:  # joining the best level: the most common case
            return best
        else:
            level = _treap_find(book_side.root, sort_key, &worse, &better)
            if level != NULL:
                return level
        level = self._allocate_level()
        level.price = price
        level.sort_key = sort_key
        level.total_qty = 0
        level.order_count = 0
        level.head = NULL
        level.tail = NULL
        level.left = NULL
        level.right = NULL
        level.priority = self._next_priority()
        level.worse = worse
        level.better = better
        if worse != NULL:
            worse.better = level
        if better != NULL:
            better.worse = level
        else:
            book_side.best = level
        book_side.root = _treap_insert(book_side.root, level)
        book_side.count += 1
        return level

    cdef void _drop_level(self, BookSide* book_side, PriceLevel* level) noexcept:
        """Remove an emptied level from its side and free it."""
        book_side.root = _treap_remove(book_side.root, level)
        if level.better != NULL:
            level.better.worse = level.worse
        else:
            book_side.best = level.worse
        if level.worse != NULL:
            level.worse.better = level.better
        book_side.count -= 1
        self._release_level(level)

    cdef uint64_t _next_priority(self) noexcept:
        """Next treap priority: xorshift64* (fast, well mixed; not for cryptography)."""
        cdef uint64_t state = self.priority_state
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        self.priority_state = state
        return state * <uint64_t>0x2545F4914F6CDD1D

    # -------------------------------------------------------------------------- resting orders

    cdef int _rest(self, int64_t order_id, int side, int64_t price, int64_t qty, int tif,
                   int64_t owner, int stp, int post_only) except -1:
        """Put a new order at the back of its level. Unchanged book if memory runs out."""
        cdef BookSide* book_side = &self.bids if side == BUY else &self.asks
        cdef PriceLevel* level
        cdef RestingOrder* order
        self._reserve_id_slot()
        self._reserve_order()
        level = self._level_for_rest(book_side, side, price)
        order = self._take_order()
        order.order_id = order_id
        order.price = price
        order.qty = qty
        order.owner = owner
        order.side = <unsigned char>side
        order.tif = <unsigned char>tif
        order.stp = <unsigned char>stp
        order.post_only = <unsigned char>post_only
        order.level = level
        order.next = NULL
        order.prev = level.tail
        if level.tail == NULL:
            level.head = order
        else:
            level.tail.next = order
        level.tail = order
        level.order_count += 1
        level.total_qty += <uint128>qty
        self._insert_id(order)
        return 0

    cdef void _remove(self, RestingOrder* order) noexcept:
        """Take a resting order out of the book entirely (dropping an emptied level)."""
        cdef PriceLevel* level = order.level
        _detach(order)
        if level.order_count == 0:
            self._drop_level(&self.bids if order.side == BUY else &self.asks, level)
        self._remove_id(order.order_id)
        self._release_order(order)

    # -------------------------------------------------------------------------- matching

    cdef bint _crosses_opposite(self, int side, int64_t price) noexcept:
        """True when an order on ``side`` at ``price`` would trade with the opposite best."""
        if side == BUY:
            return self.asks.best != NULL and price >= self.asks.best.price
        return self.bids.best != NULL and price <= self.bids.best.price

    cdef bint _fok_fillable(self, int side, int64_t price, int64_t qty, int64_t owner,
                            int stp) noexcept:
        """Whether the liquidity a FOK order may trade with covers ``qty`` (contract rules).

        Walks crossing orders in priority order, stopping as soon as ``qty`` is covered, so the
        running shortfall never overflows. Without an owner no order is a self order and whole
        level totals are used.
        """
        cdef BookSide* opposite = &self.asks if side == BUY else &self.bids
        cdef uint128 needed = <uint128>qty
        cdef PriceLevel* level = opposite.best
        cdef RestingOrder* maker
        while level != NULL:
            if (side == BUY and price < level.price) or (side == SELL and price > level.price):
                return False
            if owner == 0:
                if level.total_qty >= needed:
                    return True
                needed -= level.total_qty
            else:
                maker = level.head
                while maker != NULL:
                    if maker.owner == owner:
                        if stp != CANCEL_MAKER:
                            return False  # matching would stop at this self order
                    elif <uint128>maker.qty >= needed:
                        return True
                    else:
                        needed -= <uint128>maker.qty
                    maker = maker.next
            level = level.worse
        return False

    cdef int _match_then_finish(self, list events, object order_id_object, int64_t order_id,
                                int side, int64_t price, int64_t qty, int tif, int64_t owner,
                                int stp, int post_only) except -1:
        """Match an incoming order, then fill, cancel or rest what is left (events appended).

        The incoming order is not in the book. Each step changes the book first and builds its
        events afterwards from C copies: creating a Python object can run arbitrary Python code (a
        garbage collection running finalizers), which must never find this method holding a
        pointer into the book. Each step starts again from the best opposite level.
        """
        cdef BookSide* opposite = &self.asks if side == BUY else &self.bids
        cdef PriceLevel* level
        cdef RestingOrder* maker
        cdef int64_t maker_id, maker_qty, maker_price, traded
        cdef object maker_id_object
        while qty > 0:
            level = opposite.best
            if level == NULL:
                break
            if (side == BUY and price < level.price) or (side == SELL and price > level.price):
                break
            maker = level.head
            maker_id = maker.order_id
            maker_qty = maker.qty
            maker_price = level.price
            if owner != 0 and maker.owner == owner:
                if stp == CANCEL_TAKER:
                    events.append((_CANCELLED, order_id_object, _SELF_TRADE, qty))
                    return 0
                self._remove(maker)
                events.append((_CANCELLED, maker_id, _SELF_TRADE, maker_qty))
                if stp == CANCEL_BOTH:
                    events.append((_CANCELLED, order_id_object, _SELF_TRADE, qty))
                    return 0
                continue
            traded = qty if qty < maker_qty else maker_qty
            qty -= traded
            if traded == maker_qty:
                self._remove(maker)
                maker_id_object = maker_id
                events.append((_FILL, maker_id_object, order_id_object, maker_price, traded))
                events.append((_FILLED, maker_id_object))
            else:
                maker.qty = maker_qty - traded
                level.total_qty -= <uint128>traded
                events.append((_FILL, maker_id, order_id_object, maker_price, traded))
        if qty == 0:
            events.append((_FILLED, order_id_object))
        elif tif == IOC or tif == FOK:
            events.append((_CANCELLED, order_id_object, _IOC_REMAINDER, qty))
        else:
            if self._find(order_id) != NULL:
                # Only possible if Python code run while events were built (a finalizer) submitted
                # this very id: resting it again would corrupt the id table.
                raise RuntimeError(f"order {order_id} was submitted re-entrantly while matching")
            self._rest(order_id, side, price, qty, tif, owner, stp, post_only)
            events.append((_RESTED, order_id_object, price, qty))
        return 0

    # -------------------------------------------------------------------------- walks

    cdef RestingOrder* _canonical_copies(self, bint day_only,
                                         Py_ssize_t* count) except NULL:
        """Copies (by value) of the resting orders in canonical order; DAY orders only if asked.

        Walking the book and building Python objects are kept apart: creating a Python object can
        run arbitrary Python code (a garbage collection running finalizers) that might change the
        book, so no pointer into it may be held meanwhile. The caller frees the array.
        """
        cdef RestingOrder* copies = <RestingOrder*>PyMem_Malloc(
            (self.resting_count + 1) * sizeof(RestingOrder))
        cdef BookSide* book_side
        cdef int side_number
        cdef PriceLevel* level
        cdef RestingOrder* order
        cdef Py_ssize_t copied = 0
        if copies == NULL:
            raise MemoryError()
        for side_number in range(2):
            book_side = &self.bids if side_number == BUY else &self.asks
            level = book_side.best
            while level != NULL:
                order = level.head
                while order != NULL:
                    if not day_only or order.tif == DAY:
                        copies[copied] = order[0]
                        copied += 1
                    order = order.next
                level = level.worse
        count[0] = copied
        return copies

    # -------------------------------------------------------------------------- integrity

    cdef Py_ssize_t _validate_side(self, BookSide* book_side, int side) except -1:
        """Check one side's levels and FIFOs; returns how many orders rest on it."""
        cdef Py_ssize_t levels = 0
        cdef Py_ssize_t orders = 0
        cdef Py_ssize_t walked
        cdef PriceLevel* level
        cdef PriceLevel* worst = NULL
        cdef PriceLevel* in_order
        cdef RestingOrder* order
        cdef RestingOrder* previous
        cdef uint128 total
        name = "bid" if side == BUY else "ask"
        level = book_side.best
        if level != NULL and level.better != NULL:
            raise IntegrityError(f"best {name} level has a better neighbour")
        while level != NULL:
            levels += 1
            if levels > book_side.count:
                raise IntegrityError(f"{name} price list longer than its count {book_side.count}")
            if level.price < 1:
                raise IntegrityError(f"{name} level price {level.price} out of range")
            if level.sort_key != (level.price if side == BUY else -level.price):
                raise IntegrityError(f"{name} level {level.price} has a wrong sort key")
            if level.worse != NULL and (level.worse.better != level
                                        or level.worse.sort_key >= level.sort_key):
                raise IntegrityError(f"{name} price list out of order below {level.price}")
            if level.order_count < 1 or level.head == NULL or level.tail == NULL:
                raise IntegrityError(f"empty level kept at price {level.price} on side {side}")
            if level.head.prev != NULL or level.tail.next != NULL:
                raise IntegrityError(f"{name} level {level.price} FIFO ends are linked")
            worst = level
            walked = 0
            total = 0
            previous = NULL
            order = level.head
            while order != NULL:
                walked += 1
                if walked > level.order_count:
                    raise IntegrityError(f"{name} level {level.price} holds more orders than "
                                         f"its count {level.order_count}")
                if order.prev != previous:
                    raise IntegrityError(f"order {order.order_id} has a broken prev link")
                if order.level != level or order.side != side or order.price != level.price:
                    raise IntegrityError(
                        f"order {order.order_id} sits on the wrong side or level")
                if order.order_id < 1:
                    raise IntegrityError(f"order id {order.order_id} out of range")
                if order.qty < 1:
                    raise IntegrityError(f"order {order.order_id} rests with qty {order.qty}")
                if order.tif != GTC and order.tif != DAY:
                    raise IntegrityError(f"order {order.order_id} rests with tif {order.tif}")
                if order.stp > CANCEL_BOTH or order.owner < 0 or order.post_only > 1:
                    raise IntegrityError(f"order {order.order_id} has a bad stp, owner or flag")
                if self._find(order.order_id) != order:
                    raise IntegrityError(f"order {order.order_id} missing from the id index")
                total += <uint128>order.qty
                previous = order
                order = order.next
            if walked != level.order_count or previous != level.tail:
                raise IntegrityError(f"{name} level {level.price} count or tail is wrong")
            if total != level.total_qty:
                raise IntegrityError(f"{name} level {level.price} total is wrong")
            orders += walked
            level = level.worse
        if levels != book_side.count:
            raise IntegrityError(f"{name} price list has {levels} levels, count says "
                                 f"{book_side.count}")
        in_order = worst
        if _treap_check(book_side.root, &in_order) != levels or in_order != NULL:
            raise IntegrityError(f"{name} level tree does not hold exactly the listed levels")
        return orders
