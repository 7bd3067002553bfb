/*
 * A test double of the Neuron runtime (libnrt): the functions specc calls,
 * with the documented C signatures (nrt/nrt.h, nrt/nrt_experimental.h),
 * tensors in host memory, and a strict checker of how they are called.
 *
 * Built by build.rs into a shared library that ONLY tests load (through
 * the same dlopen path as the real runtime, via SPECC_LIBNRT / --libnrt);
 * the shipped binary never links it.
 *
 * What it checks (each breach is recorded as a violation the test reads):
 * calls outside nrt_init..nrt_close, unknown handles, use after free,
 * double free, out-of-range reads/writes, tensors missing from or foreign
 * to a set at nrt_execute, wrong sizes, tensors on another core than the
 * model, and leaks (anything still allocated at nrt_close).
 *
 * nrt_execute hands the bound input and output buffers to a callback the
 * test registers (nrtd_set_execute), which runs the graph on specc's
 * reference interpreter. A model loaded by nrt_load_collectives is rank
 * `rank` of `ranks`: the callback is told, and the ranks of one graph run
 * concurrently from the caller's threads (the double's state is guarded by
 * one lock, released while the callback runs so ranks can meet in it). NEFFs are a small text format the test writes:
 *   SPECC-TEST-NEFF 1
 *   graph <name>
 *   input0 <bytes>
 *   ...
 *   output0 <bytes>
 */
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int NRT_STATUS;
enum {
    NRT_SUCCESS = 0,
    NRT_FAILURE = 1,
    NRT_INVALID = 2,
    NRT_RESOURCE = 4,
    NRT_UNINITIALIZED = 13,
};

#define NRT_TENSOR_NAME_MAX 256
#define CORES 2 /* a Trn1 chip */

typedef struct nrt_tensor {
    int live;
    int nc;
    size_t size;
    char name[NRT_TENSOR_NAME_MAX];
    unsigned char *data;
    size_t bytes_read, bytes_written;
} nrt_tensor_t;

typedef struct binding {
    char name[NRT_TENSOR_NAME_MAX];
    nrt_tensor_t *tensor;
} binding;

typedef struct nrt_tensor_set {
    int live;
    binding *items;
    size_t n, cap;
} nrt_tensor_set_t;

typedef struct tinfo {
    char name[NRT_TENSOR_NAME_MAX];
    int input;
    size_t size;
} tinfo;

typedef struct nrt_model {
    int live;
    int nc;
    int rank, ranks; /* 0 of 1 unless loaded by nrt_load_collectives */
    char graph[NRT_TENSOR_NAME_MAX];
    tinfo *tensors;
    size_t n;
} nrt_model_t;

/* The documented layouts (nrt_experimental.h). */
typedef struct nrt_tensor_info {
    char name[NRT_TENSOR_NAME_MAX];
    int usage; /* 0 input, 1 output */
    size_t size;
    int dtype;
    uint32_t *shape;
    uint32_t ndim;
} nrt_tensor_info_t;

typedef struct nrt_tensor_info_array {
    uint64_t tensor_count;
    nrt_tensor_info_t tensor_array[];
} nrt_tensor_info_array_t;

/* What the test sees of a binding at execute. */
typedef struct nrtd_binding {
    const char *name;
    void *data;
    size_t size;
} nrtd_binding;
typedef int (*nrtd_execute_fn)(void *user, const char *graph, const nrtd_binding *inputs, size_t n_inputs,
                               const nrtd_binding *outputs, size_t n_outputs, int rank, int ranks);

/* ---- registries: every handle ever made, so stale ones are recognised ---- */
#define REGISTRY(type, name)                                                                                       \
    static type **name;                                                                                            \
    static size_t name##_n, name##_cap;                                                                            \
    static void name##_push(type *x) {                                                                             \
        if (name##_n == name##_cap) {                                                                              \
            name##_cap = name##_cap ? 2 * name##_cap : 64;                                                         \
            name = realloc(name, name##_cap * sizeof *name);                                                       \
        }                                                                                                          \
        name[name##_n++] = x;                                                                                      \
    }                                                                                                              \
    static int name##_known(const void *x) {                                                                       \
        for (size_t i = 0; i < name##_n; i++)                                                                      \
            if ((const void *)name[i] == x) return 1;                                                              \
        return 0;                                                                                                  \
    }

REGISTRY(nrt_tensor_t, tensors)
REGISTRY(nrt_tensor_set_t, sets)
REGISTRY(nrt_model_t, models)
REGISTRY(nrt_tensor_info_array_t, infos)
static int *info_live;

static int initialized;
static char *violations;
static size_t violations_len;
static char *calls;
static size_t calls_len;
static nrtd_execute_fn exec_fn;
static void *exec_user;
static long executes, inits;
static int collective_ranks; /* the group size of the collective loads so far */
static pthread_mutex_t big_lock = PTHREAD_MUTEX_INITIALIZER;

static char fail_call[64];
static int fail_status, fail_after = -1;

static void append(char **buf, size_t *len, const char *fmt, va_list ap) {
    char line[1024];
    int n = vsnprintf(line, sizeof line, fmt, ap);
    if (n < 0) return;
    if ((size_t)n >= sizeof line) n = sizeof line - 1;
    *buf = realloc(*buf, *len + n + 2);
    memcpy(*buf + *len, line, n);
    (*buf)[*len + n] = '\n';
    (*buf)[*len + n + 1] = 0;
    *len += n + 1;
}

static void violation(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    append(&violations, &violations_len, fmt, ap);
    va_end(ap);
}

static void log_call(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    append(&calls, &calls_len, fmt, ap);
    va_end(ap);
}

/* An injected failure for this call, if one is armed and due. */
static int injected(const char *call) {
    if (fail_after < 0 || strcmp(call, fail_call) != 0) return 0;
    if (fail_after-- > 0) return 0;
    fail_after = -1;
    return fail_status;
}

#define REQUIRE_INIT(call)                                                                                         \
    do {                                                                                                           \
        if (!initialized) {                                                                                        \
            violation("%s called outside nrt_init..nrt_close", call);                                              \
            return NRT_UNINITIALIZED;                                                                              \
        }                                                                                                          \
        int st_ = injected(call);                                                                                  \
        if (st_) {                                                                                                 \
            log_call("%s -> injected %d", call, st_);                                                              \
            return st_;                                                                                            \
        }                                                                                                          \
    } while (0)

static nrt_tensor_t *tensor_ok(const char *call, const nrt_tensor_t *t) {
    if (!t) {
        violation("%s: null tensor", call);
        return NULL;
    }
    if (!tensors_known(t)) {
        violation("%s: unknown tensor handle %p", call, (const void *)t);
        return NULL;
    }
    if (!t->live) {
        violation("%s: tensor `%s` used after free", call, t->name);
        return NULL;
    }
    return (nrt_tensor_t *)t;
}

static nrt_tensor_set_t *set_ok(const char *call, const nrt_tensor_set_t *s) {
    if (!s || !sets_known(s)) {
        violation("%s: unknown tensor set %p", call, (const void *)s);
        return NULL;
    }
    if (!s->live) {
        violation("%s: tensor set used after destroy", call);
        return NULL;
    }
    return (nrt_tensor_set_t *)s;
}

static nrt_model_t *model_ok(const char *call, const nrt_model_t *m) {
    if (!m || !models_known(m)) {
        violation("%s: unknown model %p", call, (const void *)m);
        return NULL;
    }
    if (!m->live) {
        violation("%s: model `%s` used after unload", call, m->graph);
        return NULL;
    }
    return (nrt_model_t *)m;
}

/* ---------------------------- the libnrt API ---------------------------- */

NRT_STATUS nrt_init(int framework, const char *fw_version, const char *fal_version) {
    log_call("nrt_init(%d)", framework);
    if (initialized) {
        violation("nrt_init called twice without nrt_close");
        return NRT_INVALID;
    }
    if (framework != 1) violation("nrt_init: framework %d, expected NRT_FRAMEWORK_TYPE_NO_FW (1)", framework);
    if (!fw_version || !fal_version) violation("nrt_init: null version string");
    int st = injected("nrt_init");
    if (st) return st;
    initialized = 1;
    inits++;
    return NRT_SUCCESS;
}

void nrt_close(void) {
    log_call("nrt_close");
    if (!initialized) {
        violation("nrt_close without nrt_init");
        return;
    }
    for (size_t i = 0; i < tensors_n; i++) {
        if (tensors[i]->live) violation("leak: tensor `%s` (%zu bytes) still allocated at nrt_close", tensors[i]->name, tensors[i]->size);
        free(tensors[i]->data);
        free(tensors[i]);
    }
    for (size_t i = 0; i < sets_n; i++) {
        if (sets[i]->live) violation("leak: a tensor set of %zu tensors not destroyed at nrt_close", sets[i]->n);
        free(sets[i]->items);
        free(sets[i]);
    }
    for (size_t i = 0; i < models_n; i++) {
        if (models[i]->live) violation("leak: model `%s` still loaded at nrt_close", models[i]->graph);
        free(models[i]->tensors);
        free(models[i]);
    }
    for (size_t i = 0; i < infos_n; i++) {
        if (info_live[i]) {
            violation("leak: a tensor info array not freed at nrt_close");
            for (uint64_t j = 0; j < infos[i]->tensor_count; j++) free(infos[i]->tensor_array[j].shape);
            free(infos[i]);
        }
    }
    tensors_n = sets_n = models_n = infos_n = 0;
    initialized = 0;
    collective_ranks = 0;
}

const char *nrt_get_status_as_str(NRT_STATUS status) {
    switch (status) {
    case 0: return "success (test double)";
    case 1: return "non specific failure (test double)";
    case 2: return "invalid argument (test double)";
    case 4: return "out of resources (test double)";
    case 13: return "runtime not initialized (test double)";
    case 1006: return "an indirect memory copy was out of bounds (test double)";
    default: return "status from the test double";
    }
}

NRT_STATUS nrt_tensor_allocate(int placement, int nc, size_t size, const char *name, nrt_tensor_t **out) {
    REQUIRE_INIT("nrt_tensor_allocate");
    log_call("nrt_tensor_allocate(%s, %zu)", name ? name : "(null)", size);
    if (!out) {
        violation("nrt_tensor_allocate: null result pointer");
        return NRT_INVALID;
    }
    if (placement != 0) violation("nrt_tensor_allocate `%s`: placement %d, expected DEVICE (0)", name ? name : "", placement);
    if (nc < 0 || nc >= CORES) {
        violation("nrt_tensor_allocate `%s`: NeuronCore %d does not exist", name ? name : "", nc);
        return NRT_INVALID;
    }
    if (size == 0) violation("nrt_tensor_allocate `%s`: zero bytes", name ? name : "");
    nrt_tensor_t *t = calloc(1, sizeof *t);
    t->live = 1;
    t->nc = nc;
    t->size = size;
    snprintf(t->name, sizeof t->name, "%s", name ? name : "");
    /* Garbage, like device memory: code that relies on zeroed tensors fails. */
    t->data = malloc(size ? size : 1);
    memset(t->data, 0x7f, size);
    tensors_push(t);
    *out = t;
    return NRT_SUCCESS;
}

void nrt_tensor_free(nrt_tensor_t **t) {
    log_call("nrt_tensor_free");
    if (!initialized) {
        violation("nrt_tensor_free called outside nrt_init..nrt_close");
        return;
    }
    if (!t || !*t) {
        violation("nrt_tensor_free: null tensor");
        return;
    }
    if (!tensors_known(*t)) {
        violation("nrt_tensor_free: unknown tensor handle");
        return;
    }
    if (!(*t)->live) {
        violation("nrt_tensor_free: double free of tensor `%s`", (*t)->name);
        return;
    }
    for (size_t i = 0; i < sets_n; i++)
        for (size_t j = 0; sets[i]->live && j < sets[i]->n; j++)
            if (sets[i]->items[j].tensor == *t)
                violation("nrt_tensor_free: tensor `%s` freed while bound as `%s` in a live tensor set", (*t)->name,
                          sets[i]->items[j].name);
    (*t)->live = 0;
    free((*t)->data);
    (*t)->data = NULL;
    *t = NULL;
}

NRT_STATUS nrt_tensor_write(nrt_tensor_t *t, const void *buf, size_t offset, size_t size) {
    REQUIRE_INIT("nrt_tensor_write");
    if (!tensor_ok("nrt_tensor_write", t)) return NRT_INVALID;
    if (!buf || offset + size > t->size || offset + size < offset) {
        violation("nrt_tensor_write `%s`: %zu bytes at %zu, tensor has %zu", t->name, size, offset, t->size);
        return NRT_INVALID;
    }
    memcpy(t->data + offset, buf, size);
    t->bytes_written += size;
    return NRT_SUCCESS;
}

NRT_STATUS nrt_tensor_read(const nrt_tensor_t *tc, void *buf, size_t offset, size_t size) {
    REQUIRE_INIT("nrt_tensor_read");
    nrt_tensor_t *t = tensor_ok("nrt_tensor_read", tc);
    if (!t) return NRT_INVALID;
    if (!buf || offset + size > t->size || offset + size < offset) {
        violation("nrt_tensor_read `%s`: %zu bytes at %zu, tensor has %zu", t->name, size, offset, t->size);
        return NRT_INVALID;
    }
    memcpy(buf, t->data + offset, size);
    t->bytes_read += size;
    return NRT_SUCCESS;
}

NRT_STATUS nrt_allocate_tensor_set(nrt_tensor_set_t **out) {
    REQUIRE_INIT("nrt_allocate_tensor_set");
    log_call("nrt_allocate_tensor_set");
    if (!out) {
        violation("nrt_allocate_tensor_set: null result pointer");
        return NRT_INVALID;
    }
    nrt_tensor_set_t *s = calloc(1, sizeof *s);
    s->live = 1;
    sets_push(s);
    *out = s;
    return NRT_SUCCESS;
}

void nrt_destroy_tensor_set(nrt_tensor_set_t **s) {
    log_call("nrt_destroy_tensor_set");
    if (!initialized) {
        violation("nrt_destroy_tensor_set called outside nrt_init..nrt_close");
        return;
    }
    if (!s || !*s || !sets_known(*s)) {
        violation("nrt_destroy_tensor_set: unknown tensor set");
        return;
    }
    if (!(*s)->live) {
        violation("nrt_destroy_tensor_set: tensor set destroyed twice");
        return;
    }
    (*s)->live = 0;
    *s = NULL;
}

NRT_STATUS nrt_add_tensor_to_tensor_set(nrt_tensor_set_t *s, const char *name, nrt_tensor_t *t) {
    REQUIRE_INIT("nrt_add_tensor_to_tensor_set");
    if (!set_ok("nrt_add_tensor_to_tensor_set", s) || !tensor_ok("nrt_add_tensor_to_tensor_set", t)) return NRT_INVALID;
    if (!name || !*name || strlen(name) >= NRT_TENSOR_NAME_MAX) {
        violation("nrt_add_tensor_to_tensor_set: bad tensor name");
        return NRT_INVALID;
    }
    log_call("nrt_add_tensor_to_tensor_set(%s <- %s)", name, t->name);
    for (size_t i = 0; i < s->n; i++) {
        if (strcmp(s->items[i].name, name) == 0) { /* documented: add or replace */
            s->items[i].tensor = t;
            return NRT_SUCCESS;
        }
    }
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 16;
        s->items = realloc(s->items, s->cap * sizeof *s->items);
    }
    snprintf(s->items[s->n].name, NRT_TENSOR_NAME_MAX, "%s", name);
    s->items[s->n].tensor = t;
    s->n++;
    return NRT_SUCCESS;
}

static int parse_neff(const char *bytes, size_t size, nrt_model_t *m) {
    char *text = malloc(size + 1);
    memcpy(text, bytes, size);
    text[size] = 0;
    int ok = 0;
    char *save = NULL;
    char *line = strtok_r(text, "\n", &save);
    if (line && strcmp(line, "SPECC-TEST-NEFF 1") == 0) {
        ok = 1;
        while ((line = strtok_r(NULL, "\n", &save))) {
            char name[NRT_TENSOR_NAME_MAX];
            unsigned long long n;
            if (strncmp(line, "graph ", 6) == 0) {
                snprintf(m->graph, sizeof m->graph, "%s", line + 6);
            } else if (sscanf(line, "%255s %llu", name, &n) == 2) {
                m->tensors = realloc(m->tensors, (m->n + 1) * sizeof *m->tensors);
                snprintf(m->tensors[m->n].name, NRT_TENSOR_NAME_MAX, "%s", name);
                m->tensors[m->n].input = strncmp(name, "input", 5) == 0;
                m->tensors[m->n].size = n;
                m->n++;
            } else {
                ok = 0;
            }
        }
    }
    free(text);
    return ok;
}

/* What nrt_load and nrt_load_collectives share (`call` names the caller). */
static NRT_STATUS load_model(const char *call, const void *neff, size_t size, int32_t start_nc, int32_t nc_count,
                             nrt_model_t **out) {
    if (!out || !neff || size == 0) {
        violation("%s: null NEFF, empty NEFF or null result pointer", call);
        return NRT_INVALID;
    }
    if (start_nc < 0 || start_nc >= CORES || (nc_count != 1 && nc_count != -1)) {
        violation("%s: start_nc %d, nc_count %d", call, start_nc, nc_count);
        return NRT_INVALID;
    }
    nrt_model_t *m = calloc(1, sizeof *m);
    if (!parse_neff(neff, size, m)) {
        free(m->tensors);
        free(m);
        return NRT_INVALID; /* not a NEFF: the runtime refuses it, not a caller error */
    }
    m->live = 1;
    m->nc = start_nc;
    m->ranks = 1;
    models_push(m);
    *out = m;
    return NRT_SUCCESS;
}

NRT_STATUS nrt_load(const void *neff, size_t size, int32_t start_nc, int32_t nc_count, nrt_model_t **out) {
    REQUIRE_INIT("nrt_load");
    log_call("nrt_load(%zu bytes, nc %d, count %d)", size, start_nc, nc_count);
    return load_model("nrt_load", neff, size, start_nc, nc_count, out);
}

NRT_STATUS nrt_load_collectives(const void *neff, size_t size, int32_t start_nc, int32_t nc_count, uint32_t g_device_id,
                                uint32_t g_device_count, nrt_model_t **out) {
    REQUIRE_INIT("nrt_load_collectives");
    log_call("nrt_load_collectives(%zu bytes, nc %d, rank %u of %u)", size, start_nc, g_device_id, g_device_count);
    if (!getenv("NEURON_RT_ROOT_COMM_ID")) {
        violation("nrt_load_collectives: NEURON_RT_ROOT_COMM_ID is not set (mandatory for collectives)");
        return NRT_FAILURE;
    }
    if (g_device_count < 2 || g_device_id >= g_device_count) {
        violation("nrt_load_collectives: rank %u of %u", g_device_id, g_device_count);
        return NRT_INVALID;
    }
    if (collective_ranks && collective_ranks != (int)g_device_count) {
        violation("nrt_load_collectives: a group of %u after a group of %d", g_device_count, collective_ranks);
        return NRT_INVALID;
    }
    collective_ranks = (int)g_device_count;
    NRT_STATUS st = load_model("nrt_load_collectives", neff, size, start_nc, nc_count, out);
    if (st == NRT_SUCCESS) {
        (*out)->rank = (int)g_device_id;
        (*out)->ranks = (int)g_device_count;
    }
    return st;
}

NRT_STATUS nrt_unload(nrt_model_t *m) {
    REQUIRE_INIT("nrt_unload");
    log_call("nrt_unload");
    if (!m || !models_known(m)) {
        violation("nrt_unload: unknown model");
        return NRT_INVALID;
    }
    if (!m->live) {
        violation("nrt_unload: model `%s` unloaded twice", m->graph);
        return NRT_INVALID;
    }
    m->live = 0;
    return NRT_SUCCESS;
}

static int by_name(const void *a, const void *b) {
    return strcmp(((const nrt_tensor_info_t *)a)->name, ((const nrt_tensor_info_t *)b)->name);
}

NRT_STATUS nrt_get_model_tensor_info(nrt_model_t *m, nrt_tensor_info_array_t **out) {
    REQUIRE_INIT("nrt_get_model_tensor_info");
    log_call("nrt_get_model_tensor_info");
    if (!model_ok("nrt_get_model_tensor_info", m) || !out) return NRT_INVALID;
    nrt_tensor_info_array_t *a = calloc(1, sizeof *a + m->n * sizeof(nrt_tensor_info_t));
    a->tensor_count = m->n;
    for (size_t i = 0; i < m->n; i++) {
        nrt_tensor_info_t *t = &a->tensor_array[i];
        snprintf(t->name, NRT_TENSOR_NAME_MAX, "%s", m->tensors[i].name);
        t->usage = m->tensors[i].input ? 0 : 1;
        t->size = m->tensors[i].size;
        t->dtype = 0;
        t->ndim = 1;
        t->shape = malloc(sizeof(uint32_t));
        t->shape[0] = (uint32_t)m->tensors[i].size;
    }
    /* Like the real runtime: lexical order (input0, input1, input10, input2). */
    qsort(a->tensor_array, m->n, sizeof(nrt_tensor_info_t), by_name);
    infos_push(a);
    info_live = realloc(info_live, infos_cap * sizeof *info_live);
    info_live[infos_n - 1] = 1;
    *out = a;
    return NRT_SUCCESS;
}

NRT_STATUS nrt_free_model_tensor_info(nrt_tensor_info_array_t *a) {
    REQUIRE_INIT("nrt_free_model_tensor_info");
    if (!a || !infos_known(a)) {
        violation("nrt_free_model_tensor_info: unknown pointer");
        return NRT_INVALID;
    }
    /* Freed arrays go back to malloc, so an address can recur: match a live one. */
    for (size_t i = 0; i < infos_n; i++) {
        if (infos[i] == a && info_live[i]) {
            info_live[i] = 0;
            for (uint64_t j = 0; j < a->tensor_count; j++) free(a->tensor_array[j].shape);
            free(a);
            return NRT_SUCCESS;
        }
    }
    violation("nrt_free_model_tensor_info: freed twice");
    return NRT_INVALID;
}

static nrt_tensor_t *find(const nrt_tensor_set_t *s, const char *name) {
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->items[i].name, name) == 0) return s->items[i].tensor;
    return NULL;
}

/* Checks a call and collects its bindings (under the lock); NRT_SUCCESS
 * when the callback may run. */
static NRT_STATUS prepare_execute(nrt_model_t *m, const nrt_tensor_set_t *in, nrt_tensor_set_t *out,
                                  nrtd_binding **ins_out, size_t *ni_out, nrtd_binding **outs_out, size_t *no_out) {
    REQUIRE_INIT("nrt_execute");
    if (!model_ok("nrt_execute", m) || !set_ok("nrt_execute", in) || !set_ok("nrt_execute", out)) return NRT_INVALID;
    log_call("nrt_execute(%s)", m->graph);
    nrtd_binding *ins = calloc(m->n + 1, sizeof *ins), *outs = calloc(m->n + 1, sizeof *outs);
    *ins_out = ins;
    *outs_out = outs;
    size_t ni = 0, no = 0;
    int bad = 0;
    for (size_t i = 0; i < m->n; i++) {
        const tinfo *ti = &m->tensors[i];
        nrt_tensor_t *t = find(ti->input ? in : out, ti->name);
        if (!t) {
            violation("nrt_execute `%s`: %s `%s` is not in the %s set", m->graph, ti->input ? "input" : "output", ti->name,
                      ti->input ? "input" : "output");
            bad = 1;
            continue;
        }
        if (!tensor_ok("nrt_execute", t)) {
            bad = 1;
            continue;
        }
        if (t->size != ti->size) {
            violation("nrt_execute `%s`: `%s` is bound to tensor `%s` of %zu bytes, the NEFF needs %zu", m->graph, ti->name,
                      t->name, t->size, ti->size);
            bad = 1;
        }
        if (t->nc != m->nc) {
            violation("nrt_execute `%s`: `%s` lives on NeuronCore %d, the model on %d", m->graph, ti->name, t->nc, m->nc);
            bad = 1;
        }
        nrtd_binding b = {ti->name, t->data, t->size};
        if (ti->input)
            ins[ni++] = b;
        else
            outs[no++] = b;
    }
    for (int side = 0; side < 2; side++) {
        const nrt_tensor_set_t *s = side ? out : in;
        for (size_t j = 0; j < s->n; j++) {
            int known = 0;
            for (size_t i = 0; i < m->n; i++)
                if (strcmp(m->tensors[i].name, s->items[j].name) == 0 && m->tensors[i].input == !side) known = 1;
            if (!known) {
                violation("nrt_execute `%s`: the %s set binds `%s`, which the NEFF does not have", m->graph,
                          side ? "output" : "input", s->items[j].name);
                bad = 1;
            }
        }
    }
    *ni_out = ni;
    *no_out = no;
    if (bad) return NRT_INVALID;
    if (!exec_fn) {
        violation("nrt_execute: no execute callback registered (nrtd_set_execute)");
        return NRT_FAILURE;
    }
    executes++;
    return NRT_SUCCESS;
}

NRT_STATUS nrt_execute(nrt_model_t *m, const nrt_tensor_set_t *in, nrt_tensor_set_t *out) {
    nrtd_binding *ins = NULL, *outs = NULL;
    size_t ni = 0, no = 0;
    pthread_mutex_lock(&big_lock);
    NRT_STATUS st = prepare_execute(m, in, out, &ins, &ni, &outs, &no);
    nrtd_execute_fn fn = exec_fn;
    void *user = exec_user;
    char graph[NRT_TENSOR_NAME_MAX] = "";
    int rank = 0, ranks = 1;
    if (st == NRT_SUCCESS) {
        snprintf(graph, sizeof graph, "%s", m->graph);
        rank = m->rank;
        ranks = m->ranks;
    }
    /* Released for the callback: the other ranks' executes must get in. */
    pthread_mutex_unlock(&big_lock);
    if (st == NRT_SUCCESS) st = fn(user, graph, ins, ni, outs, no, rank, ranks);
    free(ins);
    free(outs);
    return st;
}

/* ------------------------- the test's controls ------------------------- */

void nrtd_set_execute(nrtd_execute_fn fn, void *user) {
    exec_fn = fn;
    exec_user = user;
}

/* The (after+1)-th next call of `call` returns `status`. */
void nrtd_fail(const char *call, int status, int after) {
    snprintf(fail_call, sizeof fail_call, "%s", call);
    fail_status = status;
    fail_after = after;
}

/* Violations since the last nrtd_reset, one per line ("" if none). */
const char *nrtd_violations(void) { return violations ? violations : ""; }

/* The call log since the last nrtd_reset. */
const char *nrtd_calls(void) { return calls ? calls : ""; }

void nrtd_reset(void) {
    free(violations);
    free(calls);
    violations = calls = NULL;
    violations_len = calls_len = 0;
    fail_after = -1;
    executes = 0;
    for (size_t i = 0; i < tensors_n; i++) tensors[i]->bytes_read = tensors[i]->bytes_written = 0;
}

/* Counters: "executes", "inits", "live_tensors", "live_sets", "live_models", "initialized". */
long nrtd_count(const char *what) {
    long n = 0;
    if (strcmp(what, "executes") == 0) return executes;
    if (strcmp(what, "inits") == 0) return inits;
    if (strcmp(what, "initialized") == 0) return initialized;
    if (strcmp(what, "live_tensors") == 0)
        for (size_t i = 0; i < tensors_n; i++) n += tensors[i]->live;
    if (strcmp(what, "live_sets") == 0)
        for (size_t i = 0; i < sets_n; i++) n += sets[i]->live;
    if (strcmp(what, "live_models") == 0)
        for (size_t i = 0; i < models_n; i++) n += models[i]->live;
    return n;
}

/* Bytes the host read and wrote, since the last nrtd_reset, of the tensors
 * whose allocation name starts with `prefix`. */
void nrtd_tensor_io(const char *prefix, unsigned long long *read, unsigned long long *written) {
    *read = *written = 0;
    for (size_t i = 0; i < tensors_n; i++) {
        if (strncmp(tensors[i]->name, prefix, strlen(prefix)) == 0) {
            *read += tensors[i]->bytes_read;
            *written += tensors[i]->bytes_written;
        }
    }
}
