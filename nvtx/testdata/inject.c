// A minimal NVTX injection library for the tests: it plays the part of a
// profiler, attaching to the NVTX callback tables and writing one line per
// event to the file named by NVTX_RECORD_FILE.
//
// Line format (space separated, fixed field order):
//   kind tid=<gettid> dom=<domain|-> depth=<n> msg=<ascii:..|reg:..|-> color=<aarrggbb|-> cat=<n> payload=<u64:..|i64:..|f64:..|->
// for events, and kind-specific fields for the naming calls. Depth is this
// library's own per-thread, per-domain push/pop nesting count.
#define _GNU_SOURCE
#define NVTX_NO_IMPL
#include <nvtx3/nvToolsExt.h>

#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAX_DOMAINS 16

struct nvtxDomainRegistration_st {
    int index; // 0 is the global domain
    char name[64];
};

struct nvtxStringRegistration_st {
    nvtxDomainHandle_t domain;
    char *text;
};

static int record_fd = -1;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int ndomains = 1;
static struct nvtxDomainRegistration_st domains[MAX_DOMAINS];
static uint64_t next_range_id = 0x100000001ull; // exercises all 64 bits
static __thread int depth[MAX_DOMAINS];

static unsigned tid(void) { return (unsigned)syscall(SYS_gettid); }

// emit writes one line with a single write(2): the Go helper leaves through
// os.Exit, which skips stdio's exit-time flush.
static void emit(const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (n > (int)sizeof buf - 2)
        n = (int)sizeof buf - 2;
    buf[n++] = '\n';
    pthread_mutex_lock(&mu);
    if (write(record_fd, buf, (size_t)n) != n)
        abort();
    pthread_mutex_unlock(&mu);
}

static int dom_index(nvtxDomainHandle_t d) { return d ? d->index : 0; }
static const char *dom_name(nvtxDomainHandle_t d) { return d ? d->name : "-"; }

static void fmt_attr(char *out, size_t n, nvtxDomainHandle_t d, const nvtxEventAttributes_t *a)
{
    char msg[256], color[16], payload[64];

    if (!a || a->version != NVTX_VERSION || a->size != NVTX_EVENT_ATTRIB_STRUCT_SIZE) {
        snprintf(out, n, "BAD-ATTRIBUTES");
        return;
    }
    switch (a->messageType) {
    case NVTX_MESSAGE_TYPE_ASCII:
        snprintf(msg, sizeof msg, "ascii:%s", a->message.ascii ? a->message.ascii : "(null)");
        break;
    case NVTX_MESSAGE_TYPE_REGISTERED:
        if (!a->message.registered)
            snprintf(msg, sizeof msg, "reg:(null)");
        else if (a->message.registered->domain != d)
            snprintf(msg, sizeof msg, "reg-of-other-domain:%s", a->message.registered->text);
        else
            snprintf(msg, sizeof msg, "reg:%s", a->message.registered->text);
        break;
    case NVTX_MESSAGE_UNKNOWN:
        snprintf(msg, sizeof msg, "-");
        break;
    default:
        snprintf(msg, sizeof msg, "type%d", (int)a->messageType);
    }
    if (a->colorType == NVTX_COLOR_ARGB)
        snprintf(color, sizeof color, "%08" PRIx32, a->color);
    else if (a->colorType == NVTX_COLOR_UNKNOWN)
        snprintf(color, sizeof color, "-");
    else
        snprintf(color, sizeof color, "type%d", (int)a->colorType);
    switch (a->payloadType) {
    case NVTX_PAYLOAD_UNKNOWN:
        snprintf(payload, sizeof payload, "-");
        break;
    case NVTX_PAYLOAD_TYPE_UNSIGNED_INT64:
        snprintf(payload, sizeof payload, "u64:%" PRIu64, a->payload.ullValue);
        break;
    case NVTX_PAYLOAD_TYPE_INT64:
        snprintf(payload, sizeof payload, "i64:%" PRId64, a->payload.llValue);
        break;
    case NVTX_PAYLOAD_TYPE_DOUBLE:
        snprintf(payload, sizeof payload, "f64:%g", a->payload.dValue);
        break;
    default:
        snprintf(payload, sizeof payload, "type%d", (int)a->payloadType);
    }
    snprintf(out, n, "msg=%s color=%s cat=%" PRIu32 " payload=%s", msg, color, a->category, payload);
}

// ---- core (global domain) ----

static int dom_push(nvtxDomainHandle_t d, const nvtxEventAttributes_t *a)
{
    char s[512];
    int i = dom_index(d);
    fmt_attr(s, sizeof s, d, a);
    int level = depth[i]++;
    emit("push tid=%u dom=%s depth=%d %s", tid(), dom_name(d), level, s);
    return level;
}

static int dom_pop(nvtxDomainHandle_t d)
{
    int i = dom_index(d);
    if (depth[i] == 0) {
        emit("pop-unbalanced tid=%u dom=%s", tid(), dom_name(d));
        return -1;
    }
    int level = --depth[i];
    emit("pop tid=%u dom=%s depth=%d", tid(), dom_name(d), level);
    return level;
}

static void dom_mark(nvtxDomainHandle_t d, const nvtxEventAttributes_t *a)
{
    char s[512];
    fmt_attr(s, sizeof s, d, a);
    emit("mark tid=%u dom=%s depth=%d %s", tid(), dom_name(d), depth[dom_index(d)], s);
}

static nvtxRangeId_t dom_start(nvtxDomainHandle_t d, const nvtxEventAttributes_t *a)
{
    char s[512];
    fmt_attr(s, sizeof s, d, a);
    pthread_mutex_lock(&mu);
    nvtxRangeId_t id = next_range_id++;
    pthread_mutex_unlock(&mu);
    emit("start tid=%u dom=%s id=%#" PRIx64 " %s", tid(), dom_name(d), id, s);
    return id;
}

static void dom_end(nvtxDomainHandle_t d, nvtxRangeId_t id)
{
    emit("end tid=%u dom=%s id=%#" PRIx64, tid(), dom_name(d), id);
}

static int rangePushEx(const nvtxEventAttributes_t *a) { return dom_push(0, a); }
static int rangePop(void) { return dom_pop(0); }
static void markEx(const nvtxEventAttributes_t *a) { dom_mark(0, a); }
static nvtxRangeId_t rangeStartEx(const nvtxEventAttributes_t *a) { return dom_start(0, a); }
static void rangeEnd(nvtxRangeId_t id) { dom_end(0, id); }

static void nameCategoryA(uint32_t c, const char *name)
{
    emit("name-category tid=%u dom=- cat=%" PRIu32 " name=%s", tid(), c, name);
}

static void nameOsThreadA(uint32_t target, const char *name)
{
    emit("name-thread tid=%u target=%" PRIu32 " name=%s", tid(), target, name);
}

// ---- core2 (domains) ----

static int domainRangePushEx(nvtxDomainHandle_t d, const nvtxEventAttributes_t *a) { return dom_push(d, a); }
static int domainRangePop(nvtxDomainHandle_t d) { return dom_pop(d); }
static void domainMarkEx(nvtxDomainHandle_t d, const nvtxEventAttributes_t *a) { dom_mark(d, a); }
static nvtxRangeId_t domainRangeStartEx(nvtxDomainHandle_t d, const nvtxEventAttributes_t *a) { return dom_start(d, a); }
static void domainRangeEnd(nvtxDomainHandle_t d, nvtxRangeId_t id) { dom_end(d, id); }

static void domainNameCategoryA(nvtxDomainHandle_t d, uint32_t c, const char *name)
{
    emit("name-category tid=%u dom=%s cat=%" PRIu32 " name=%s", tid(), dom_name(d), c, name);
}

static nvtxStringHandle_t domainRegisterStringA(nvtxDomainHandle_t d, const char *s)
{
    struct nvtxStringRegistration_st *r = calloc(1, sizeof *r);
    r->domain = d;
    r->text = strdup(s);
    emit("register-string tid=%u dom=%s text=%s", tid(), dom_name(d), s);
    return r;
}

static nvtxDomainHandle_t domainCreateA(const char *name)
{
    pthread_mutex_lock(&mu);
    if (ndomains == MAX_DOMAINS)
        abort();
    nvtxDomainHandle_t d = &domains[ndomains];
    d->index = ndomains++;
    snprintf(d->name, sizeof d->name, "%s", name);
    pthread_mutex_unlock(&mu);
    emit("domain-create tid=%u dom=%s", tid(), d->name);
    return d;
}

static void domainDestroy(nvtxDomainHandle_t d) { emit("domain-destroy tid=%u dom=%s", tid(), dom_name(d)); }

static void initialize(const void *reserved)
{
    (void)reserved;
    emit("initialize tid=%u", tid());
}

static int attach(NvtxGetExportTableFunc_t getExportTable, NvtxCallbackModule module,
                  const unsigned *ids, NvtxFunctionPointer const *fns, size_t n)
{
    const NvtxExportTableCallbacks *cb = getExportTable(NVTX_ETID_CALLBACKS);
    NvtxFunctionTable table = 0;
    unsigned size = 0;
    if (!cb || cb->struct_size < sizeof *cb || !cb->GetModuleFunctionTable(module, &table, &size))
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] >= size)
            return 0;
        *table[ids[i]] = fns[i];
    }
    return 1;
}

#define FN(f) ((NvtxFunctionPointer)(f))

__attribute__((visibility("default"))) int InitializeInjectionNvtx2(NvtxGetExportTableFunc_t getExportTable)
{
    const char *path = getenv("NVTX_RECORD_FILE");
    if (!path)
        return 0;
    record_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (record_fd < 0)
        return 0;

    static const unsigned core_ids[] = {
        NVTX_CBID_CORE_MarkEx, NVTX_CBID_CORE_RangeStartEx, NVTX_CBID_CORE_RangeEnd,
        NVTX_CBID_CORE_RangePushEx, NVTX_CBID_CORE_RangePop, NVTX_CBID_CORE_NameCategoryA,
        NVTX_CBID_CORE_NameOsThreadA,
    };
    const NvtxFunctionPointer core_fns[] = {
        FN(markEx), FN(rangeStartEx), FN(rangeEnd),
        FN(rangePushEx), FN(rangePop), FN(nameCategoryA),
        FN(nameOsThreadA),
    };
    static const unsigned core2_ids[] = {
        NVTX_CBID_CORE2_DomainMarkEx, NVTX_CBID_CORE2_DomainRangeStartEx, NVTX_CBID_CORE2_DomainRangeEnd,
        NVTX_CBID_CORE2_DomainRangePushEx, NVTX_CBID_CORE2_DomainRangePop, NVTX_CBID_CORE2_DomainNameCategoryA,
        NVTX_CBID_CORE2_DomainRegisterStringA, NVTX_CBID_CORE2_DomainCreateA, NVTX_CBID_CORE2_DomainDestroy,
        NVTX_CBID_CORE2_Initialize,
    };
    const NvtxFunctionPointer core2_fns[] = {
        FN(domainMarkEx), FN(domainRangeStartEx), FN(domainRangeEnd),
        FN(domainRangePushEx), FN(domainRangePop), FN(domainNameCategoryA),
        FN(domainRegisterStringA), FN(domainCreateA), FN(domainDestroy),
        FN(initialize),
    };
    _Static_assert(sizeof core_ids / sizeof *core_ids == sizeof core_fns / sizeof *core_fns, "core table");
    _Static_assert(sizeof core2_ids / sizeof *core2_ids == sizeof core2_fns / sizeof *core2_fns, "core2 table");

    if (!attach(getExportTable, NVTX_CB_MODULE_CORE, core_ids, core_fns, sizeof core_ids / sizeof *core_ids) ||
        !attach(getExportTable, NVTX_CB_MODULE_CORE2, core2_ids, core2_fns, sizeof core2_ids / sizeof *core2_ids))
        return 0;
    emit("attach tid=%u", tid());
    return 1;
}
