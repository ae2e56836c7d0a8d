/* pymalloc's arenas on transparent huge pages (xfrmd/hugeheap.py says why and when).
 *
 * install() replaces the object allocator's arena allocator (PyObject_SetArenaAllocator):
 * arenas are carved out of 2 MiB-aligned anonymous regions that madvise(MADV_HUGEPAGE) asks
 * the kernel to back with one huge page each (THP "madvise" mode, the common default, backs
 * only such regions; CPython's own arenas are 1 MiB mmaps that no huge page can back). A
 * region holds 2 MiB / arena size arenas; it is unmapped when its last arena is freed, except
 * one empty region kept for the next arena (an arena freed and made again, as pymalloc does
 * under churn, costs no mmap and no new huge page then).
 *
 * Arenas made by the default allocator before install() go back to it (its free is
 * munmap): free() looks the address up among its own regions first. A request of another
 * size than 2 MiB divides into, or a failed mmap, is the default allocator's too: nothing
 * here can fail where CPython's allocator would have worked.
 *
 * Blocks of BIG bytes or more (the hash tables of a big dict, a dump's snapshot list) come
 * from the raw domain (PyMem_SetAllocator(PYMEM_DOMAIN_RAW) wrapping the one installed): each
 * is a mapping of its own made of whole huge pages, the block at REGION-aligned + HDR. A free
 * or realloc of any other address goes to the wrapped allocator after one test of the address
 * (a malloc'd block sits at that offset of a huge page once in 8,192 16-byte-aligned
 * addresses, and then the table of blocks says whose it is).
 *
 * The arena calls come from pymalloc with the GIL held: no locking. The raw domain is called
 * without the GIL: its table of blocks has a mutex of its own.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>

#define REGION ((size_t)2 << 20)        /* one x86-64 / arm64 (4 KiB granule) huge page */

typedef struct {
    char *base;
    uint64_t used;                      /* one bit per arena slot */
} region_t;

static PyObjectArenaAllocator old;      /* the allocator install() replaced */
static int installed;
static size_t arena_size;               /* pymalloc's ARENA_SIZE, from its first request */
static unsigned slots;                  /* arenas per region */
static uint64_t full;                   /* `used` of a full region */
static region_t *regions;
static size_t nregions, cap;
static size_t spare = (size_t)-1;       /* index of the empty region kept, if any */
static size_t hint;                     /* a region likely to have a free slot */
/* counters (stats()) */
static size_t n_alloc, n_free, n_fallback_alloc, n_old_free, n_mapped, n_unmapped, n_advise_failed;

/* A new 2 MiB-aligned region (twice the size mapped, the unaligned ends unmapped), asked to
 * be a huge page; its index, or -1. */
static Py_ssize_t region_new(void)
{
    if (nregions == cap) {
        size_t ncap = cap ? cap * 2 : 64;
        region_t *r = realloc(regions, ncap * sizeof(*r));
        if (r == NULL)
            return -1;
        regions = r;
        cap = ncap;
    }
    char *p = mmap(NULL, 2 * REGION, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return -1;
    char *base = (char *)(((uintptr_t)p + REGION - 1) & ~(uintptr_t)(REGION - 1));
    if (base > p)
        munmap(p, (size_t)(base - p));
    if (base + REGION < p + 2 * REGION)
        munmap(base + REGION, (size_t)(p + 2 * REGION - (base + REGION)));
#ifdef MADV_HUGEPAGE
    if (madvise(base, REGION, MADV_HUGEPAGE) != 0)
        n_advise_failed++;      /* THP off or absent: plain pages, still correct */
#else
    n_advise_failed++;
#endif
    regions[nregions].base = base;
    regions[nregions].used = 0;
    n_mapped++;
    return (Py_ssize_t)nregions++;
}

static void *arena_alloc(void *ctx, size_t size)
{
    if (arena_size == 0 && size >= ((size_t)32 << 10) && size <= REGION && REGION % size == 0) {
        arena_size = size;
        slots = (unsigned)(REGION / size);
        full = slots == 64 ? ~(uint64_t)0 : (((uint64_t)1 << slots) - 1);
    }
    if (size != arena_size) {
        n_fallback_alloc++;
        return old.alloc(old.ctx, size);
    }
    size_t i = hint;
    if (i >= nregions || regions[i].used == full) {
        for (i = 0; i < nregions && regions[i].used == full; i++)
            ;
        if (i == nregions) {
            Py_ssize_t j = region_new();
            if (j < 0) {
                n_fallback_alloc++;
                return old.alloc(old.ctx, size);
            }
            i = (size_t)j;
        }
    }
    region_t *r = &regions[i];
    unsigned s = 0;
    while (r->used & ((uint64_t)1 << s))
        s++;
    r->used |= (uint64_t)1 << s;
    if (spare == i)
        spare = (size_t)-1;
    hint = i;
    n_alloc++;
    return r->base + (size_t)s * arena_size;
}

static void arena_free(void *ctx, void *ptr, size_t size)
{
    char *base = (char *)((uintptr_t)ptr & ~(uintptr_t)(REGION - 1));
    size_t i;
    if (size == arena_size && arena_size) {
        for (i = 0; i < nregions; i++)
            if (regions[i].base == base)
                break;
    } else {
        i = nregions;
    }
    if (i == nregions) {            /* an arena of the default allocator */
        n_old_free++;
        old.free(old.ctx, ptr, size);
        return;
    }
    region_t *r = &regions[i];
    r->used &= ~((uint64_t)1 << (((char *)ptr - base) / arena_size));
    n_free++;
    hint = i;
    if (r->used)
        return;
    if (spare == (size_t)-1 || spare == i) {
        spare = i;
        return;
    }
    munmap(r->base, REGION);
    n_unmapped++;
    nregions--;
    if (i != nregions) {            /* the last region takes the freed index */
        regions[i] = regions[nregions];
        if (spare == nregions)
            spare = i;
    }
    hint = spare;
}

/* -- big blocks of the raw domain -------------------------------------------------------- */

#define BIG ((size_t)4 << 20)           /* 4 MiB: less than a third of the last huge page idle */
#define HDR ((size_t)16)                /* malloc's alignment, kept */

typedef struct {
    char *base;
    size_t len;                         /* of the mapping */
} block_t;

static PyMemAllocatorEx old_raw;
static pthread_mutex_t blocks_lock = PTHREAD_MUTEX_INITIALIZER;
static block_t *blocks;
static size_t nblocks, blocks_cap;
static size_t n_big_alloc, n_big_free;

static inline int maybe_big(const void *p)
{
    return ((uintptr_t)p & (REGION - 1)) == HDR;
}

/* A mapping of whole huge pages holding `size` bytes after HDR, REGION-aligned; its block. */
static void *big_new(size_t size)
{
    if (size > PY_SSIZE_T_MAX - 2 * REGION)
        return NULL;
    size_t len = (size + HDR + REGION - 1) & ~(REGION - 1);
    char *p = mmap(NULL, len + REGION, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    char *base = (char *)(((uintptr_t)p + REGION - 1) & ~(uintptr_t)(REGION - 1));
    if (base > p)
        munmap(p, (size_t)(base - p));
    if (base + len < p + len + REGION)
        munmap(base + len, (size_t)(p + len + REGION - (base + len)));
#ifdef MADV_HUGEPAGE
    madvise(base, len, MADV_HUGEPAGE);
#endif
    pthread_mutex_lock(&blocks_lock);
    if (nblocks == blocks_cap) {
        size_t ncap = blocks_cap ? blocks_cap * 2 : 16;
        block_t *b = realloc(blocks, ncap * sizeof(*b));
        if (b == NULL) {
            pthread_mutex_unlock(&blocks_lock);
            munmap(base, len);
            return NULL;
        }
        blocks = b;
        blocks_cap = ncap;
    }
    blocks[nblocks].base = base;
    blocks[nblocks].len = len;
    nblocks++;
    n_big_alloc++;
    pthread_mutex_unlock(&blocks_lock);
    return base + HDR;
}

/* The length of the mapping of our block `p`, taken out of the table when `take`; 0 when
 * `p` is not ours. */
static size_t big_find(const void *p, int take)
{
    size_t len = 0;
    const char *base = (const char *)p - HDR;
    pthread_mutex_lock(&blocks_lock);
    for (size_t i = 0; i < nblocks; i++) {
        if (blocks[i].base == base) {
            len = blocks[i].len;
            if (take) {
                blocks[i] = blocks[--nblocks];
                n_big_free++;
            }
            break;
        }
    }
    pthread_mutex_unlock(&blocks_lock);
    return len;
}

static void *raw_malloc(void *ctx, size_t size)
{
    if (size >= BIG) {
        void *p = big_new(size);
        if (p != NULL)
            return p;
    }
    return old_raw.malloc(old_raw.ctx, size);
}

static void *raw_calloc(void *ctx, size_t nelem, size_t elsize)
{
    if (elsize && nelem <= PY_SSIZE_T_MAX / elsize && nelem * elsize >= BIG) {
        void *p = big_new(nelem * elsize);     /* a fresh mapping reads as zeros */
        if (p != NULL)
            return p;
    }
    return old_raw.calloc(old_raw.ctx, nelem, elsize);
}

static void raw_free(void *ctx, void *p)
{
    if (p != NULL && maybe_big(p)) {
        size_t len = big_find(p, 1);
        if (len) {
            munmap((char *)p - HDR, len);
            return;
        }
    }
    old_raw.free(old_raw.ctx, p);
}

static void *raw_realloc(void *ctx, void *p, size_t size)
{
    size_t len = p != NULL && maybe_big(p) ? big_find(p, 0) : 0;
    if (len == 0) {
        /* the wrapped allocator's block: it stays that allocator's (its size is not known
         * here to copy it) */
        return old_raw.realloc(old_raw.ctx, p, size);
    }
    if (size + HDR <= len && size >= BIG / 2)
        return p;                       /* fits, and not worth a copy to give pages back */
    void *q = size >= BIG ? big_new(size) : NULL;
    if (q == NULL)
        q = old_raw.malloc(old_raw.ctx, size ? size : 1);
    if (q == NULL)
        return NULL;                    /* realloc's contract: the old block stays valid */
    memcpy(q, p, size < len - HDR ? size : len - HDR);
    raw_free(ctx, p);
    return q;
}

static PyObject *install(PyObject *self, PyObject *args)
{
    int big = 1;
    if (!PyArg_ParseTuple(args, "|p", &big))
        return NULL;
    if (!installed) {
        PyObject_GetArenaAllocator(&old);
        PyObjectArenaAllocator mine = {NULL, arena_alloc, arena_free};
        PyObject_SetArenaAllocator(&mine);
        if (big) {
            PyMem_GetAllocator(PYMEM_DOMAIN_RAW, &old_raw);
            PyMemAllocatorEx raw = {NULL, raw_malloc, raw_calloc, raw_realloc, raw_free};
            PyMem_SetAllocator(PYMEM_DOMAIN_RAW, &raw);
        }
        installed = 1;
    }
    Py_RETURN_TRUE;
}

static PyObject *stats(PyObject *self, PyObject *unused)
{
    size_t arenas = 0;
    for (size_t i = 0; i < nregions; i++)
        arenas += (size_t)__builtin_popcountll(regions[i].used);
    pthread_mutex_lock(&blocks_lock);
    Py_ssize_t big = (Py_ssize_t)nblocks, big_allocs = (Py_ssize_t)n_big_alloc,
               big_frees = (Py_ssize_t)n_big_free;
    pthread_mutex_unlock(&blocks_lock);
    return Py_BuildValue(
        "{s:O,s:n,s:n,s:n,s:n,s:n,s:n,s:n,s:n,s:n,s:n,s:n,s:n,s:n}",
        "installed", installed ? Py_True : Py_False, "arena_size", (Py_ssize_t)arena_size,
        "regions", (Py_ssize_t)nregions, "arenas", (Py_ssize_t)arenas,
        "allocs", (Py_ssize_t)n_alloc, "frees", (Py_ssize_t)n_free,
        "fallback_allocs", (Py_ssize_t)n_fallback_alloc, "default_frees", (Py_ssize_t)n_old_free,
        "mapped", (Py_ssize_t)n_mapped, "unmapped", (Py_ssize_t)n_unmapped,
        "advise_failed", (Py_ssize_t)n_advise_failed, "big_blocks", big,
        "big_allocs", big_allocs, "big_frees", big_frees);
}

static PyObject *region_bases(PyObject *self, PyObject *unused)
{
    PyObject *out = PyList_New((Py_ssize_t)nregions);
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < nregions; i++) {
        PyObject *v = PyLong_FromVoidPtr(regions[i].base);
        if (v == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, (Py_ssize_t)i, v);
    }
    return out;
}

static PyMethodDef methods[] = {
    {"install", install, METH_VARARGS, "Make pymalloc's new arenas out of huge-page regions."},
    {"stats", stats, METH_NOARGS, "Counters of the allocator (a dict)."},
    {"region_bases", region_bases, METH_NOARGS, "The start address of each region."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_hugeheap", NULL, -1, methods};

PyMODINIT_FUNC PyInit__hugeheap(void) { return PyModule_Create(&module); }
