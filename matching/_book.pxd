# The compiled order book's reviewed contract: its C data structures and typed internals.
#
# The Python-visible behaviour (events, ranges, check order, hash format) is specified in
# matching/constants.py and is identical to matching/reference.py; this file is about *how* the
# compiled book stores a book so that one command costs a few hundred nanoseconds.
#
# Memory: every struct is allocated with PyMem_Malloc/PyMem_Calloc so tracemalloc accounts for
# it (the benchmark measures bytes per resting order that way).
# Arithmetic: there is no division anywhere, so no cdivision directive is needed; sums that could
# exceed int64 are 128-bit (level totals, the FOK shortfall).

from libc.stdint cimport int64_t, uint8_t, uint64_t

cdef extern from *:
    """
    /* Level totals are sums of up to 2**63-1 per order over many orders: 64 bits overflow. */
    typedef unsigned __int128 venue_uint128;
    """
    # Cython has no 128-bit type; arithmetic on it happens in C, conversion to Python goes
    # through _uint128_to_int() (never Cython's own int conversion, which would truncate).
    ctypedef unsigned long long uint128 "venue_uint128"


# ------------------------------------------------------------------------------ data layout

cdef struct PriceLevel

cdef struct RestingOrder:
    # 64 bytes: one cache line per order.
    int64_t order_id
    int64_t price
    int64_t qty             # remaining quantity, 1 .. 2**63-1 while resting
    int64_t owner
    RestingOrder* prev      # towards the front of the level's FIFO (older), NULL at the head
    RestingOrder* next      # towards the back (newer), NULL at the tail; freelist link when free
    PriceLevel* level
    uint8_t side
    uint8_t tif
    uint8_t stp
    uint8_t post_only

cdef struct PriceLevel:
    # Field order: what the tree and list walks read comes first, in one cache line.
    int64_t sort_key        # price for bids, -price for asks: on both sides larger is better
    uint64_t priority       # treap heap priority, random: expected depth O(log levels)
    PriceLevel* left        # treap children (smaller / larger sort_key)
    PriceLevel* right
    PriceLevel* better      # price list: the next level towards the best, NULL for the best
    PriceLevel* worse       # the next level away from the best; freelist link when free
    int64_t price
    int64_t order_count
    uint128 total_qty       # exact sum of the level's remaining quantities
    RestingOrder* head      # oldest order (first to trade)
    RestingOrder* tail      # newest order

cdef struct BookSide:
    # A treap finds, inserts and removes a level in expected O(log levels) whatever the prices;
    # the price list gives the best level in O(1) and best-first walks (matching, depth,
    # snapshot) without touching the tree. Joining or creating the best level skips the tree
    # search entirely (the common case for flow near the touch).
    PriceLevel* best
    PriceLevel* root
    Py_ssize_t count

cdef struct IdSlot:
    # One slot of the open-addressing (linear probing) id table; order_id 0 marks an empty slot
    # (valid ids start at 1). The id is stored beside the pointer so probing never touches orders.
    int64_t order_id
    RestingOrder* order


# ------------------------------------------------------------------------------ the book

cdef class OrderBook:
    cdef BookSide bids
    cdef BookSide asks
    cdef IdSlot* id_slots
    cdef uint64_t id_mask            # capacity - 1 (capacity is a power of two)
    cdef int id_shift                # 64 - log2(capacity), for Fibonacci hashing
    cdef Py_ssize_t resting_count    # occupied slots == resting orders
    cdef RestingOrder* free_orders
    cdef Py_ssize_t free_order_count
    cdef PriceLevel* free_levels
    cdef Py_ssize_t free_level_count
    cdef uint64_t priority_state     # xorshift64* state for treap priorities

    # id table
    cdef RestingOrder* _find(self, int64_t order_id) noexcept
    cdef int _reserve_id_slot(self) except -1
    cdef void _insert_id(self, RestingOrder* order) noexcept
    cdef void _remove_id(self, int64_t order_id) noexcept
    cdef int _resize_id_table(self, uint64_t capacity) except -1

    # allocation (freelists in front of PyMem_Malloc)
    cdef int _reserve_order(self) except -1
    cdef RestingOrder* _take_order(self) noexcept
    cdef void _release_order(self, RestingOrder* order) noexcept
    cdef PriceLevel* _allocate_level(self) except NULL
    cdef void _release_level(self, PriceLevel* level) noexcept

    # price levels
    cdef PriceLevel* _level_for_rest(self, BookSide* book_side, int side, int64_t price) except NULL
    cdef void _drop_level(self, BookSide* book_side, PriceLevel* level) noexcept
    cdef uint64_t _next_priority(self) noexcept

    # resting orders
    cdef int _rest(self, int64_t order_id, int side, int64_t price, int64_t qty, int tif,
                   int64_t owner, int stp, int post_only) except -1
    cdef void _remove(self, RestingOrder* order) noexcept

    # matching
    cdef bint _crosses_opposite(self, int side, int64_t price) noexcept
    cdef bint _fok_fillable(self, int side, int64_t price, int64_t qty, int64_t owner,
                            int stp) noexcept
    cdef int _match_then_finish(self, list events, object order_id_object, int64_t order_id,
                                int side, int64_t price, int64_t qty, int tif, int64_t owner,
                                int stp, int post_only) except -1

    # walks (copies, so that building Python objects never holds a pointer into the book)
    cdef RestingOrder* _canonical_copies(self, bint day_only, Py_ssize_t* count) except NULL

    # integrity
    cdef Py_ssize_t _validate_side(self, BookSide* book_side, int side) except -1
