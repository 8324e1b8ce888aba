#define _GNU_SOURCE
#include <nvtx3/nvToolsExt.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "shim.h"

// The Go side mirrors these NVTX enum values as constants so that its hot
// path needs no C header; fail the build if the header ever disagrees.
_Static_assert(NVTX_MESSAGE_UNKNOWN == 0, "nvtx message type");
_Static_assert(NVTX_MESSAGE_TYPE_ASCII == 1, "nvtx message type");
_Static_assert(NVTX_MESSAGE_TYPE_REGISTERED == 3, "nvtx message type");
_Static_assert(NVTX_PAYLOAD_UNKNOWN == 0, "nvtx payload type");
_Static_assert(NVTX_PAYLOAD_TYPE_UNSIGNED_INT64 == 1, "nvtx payload type");
_Static_assert(NVTX_PAYLOAD_TYPE_INT64 == 2, "nvtx payload type");
_Static_assert(NVTX_PAYLOAD_TYPE_DOUBLE == 3, "nvtx payload type");
_Static_assert(NVTX_NO_PUSH_POP_TRACKING == -2, "nvtx no tracking");
_Static_assert(sizeof(uintptr_t) == sizeof(void *), "uintptr_t holds a pointer");

static inline nvtxEventAttributes_t attr(int32_t msg_type, uintptr_t msg, uint32_t color,
                                         uint32_t category, int32_t payload_type, uint64_t payload)
{
    nvtxEventAttributes_t a = {0};
    a.version = NVTX_VERSION;
    a.size = NVTX_EVENT_ATTRIB_STRUCT_SIZE;
    a.category = category;
    // ARGB 0 (fully transparent black) doubles as "no color": it is the
    // zero value of Go's Color, and no tool draws an invisible range usefully.
    a.colorType = color ? NVTX_COLOR_ARGB : NVTX_COLOR_UNKNOWN;
    a.color = color;
    a.payloadType = payload_type;
    // Go passes float64 payloads as their IEEE bits, so writing the 64-bit
    // integer member sets dValue as well.
    a.payload.ullValue = payload;
    a.messageType = msg_type;
    if (msg_type == NVTX_MESSAGE_TYPE_REGISTERED)
        a.message.registered = (nvtxStringHandle_t)msg;
    else
        a.message.ascii = (const char *)msg;
    return a;
}

#define ATTR_ARGS msg_type, msg, color, category, payload_type, payload

void gbnvtx_initialize(void) { nvtxInitialize(0); }

int gbnvtx_push(int32_t msg_type, uintptr_t msg, uint32_t color, uint32_t category, int32_t payload_type, uint64_t payload)
{
    nvtxEventAttributes_t a = attr(ATTR_ARGS);
    return nvtxRangePushEx(&a);
}

int gbnvtx_pop(void) { return nvtxRangePop(); }

void gbnvtx_mark(int32_t msg_type, uintptr_t msg, uint32_t color, uint32_t category, int32_t payload_type, uint64_t payload)
{
    nvtxEventAttributes_t a = attr(ATTR_ARGS);
    nvtxMarkEx(&a);
}

uint64_t gbnvtx_range_start(int32_t msg_type, uintptr_t msg, uint32_t color, uint32_t category, int32_t payload_type, uint64_t payload)
{
    nvtxEventAttributes_t a = attr(ATTR_ARGS);
    return nvtxRangeStartEx(&a);
}

void gbnvtx_range_end(uint64_t id) { nvtxRangeEnd(id); }

int gbnvtx_domain_push(uintptr_t domain, int32_t msg_type, uintptr_t msg, uint32_t color, uint32_t category, int32_t payload_type, uint64_t payload)
{
    nvtxEventAttributes_t a = attr(ATTR_ARGS);
    return nvtxDomainRangePushEx((nvtxDomainHandle_t)domain, &a);
}

int gbnvtx_domain_pop(uintptr_t domain) { return nvtxDomainRangePop((nvtxDomainHandle_t)domain); }

void gbnvtx_domain_mark(uintptr_t domain, int32_t msg_type, uintptr_t msg, uint32_t color, uint32_t category, int32_t payload_type, uint64_t payload)
{
    nvtxEventAttributes_t a = attr(ATTR_ARGS);
    nvtxDomainMarkEx((nvtxDomainHandle_t)domain, &a);
}

uint64_t gbnvtx_domain_range_start(uintptr_t domain, int32_t msg_type, uintptr_t msg, uint32_t color, uint32_t category, int32_t payload_type, uint64_t payload)
{
    nvtxEventAttributes_t a = attr(ATTR_ARGS);
    return nvtxDomainRangeStartEx((nvtxDomainHandle_t)domain, &a);
}

void gbnvtx_domain_range_end(uintptr_t domain, uint64_t id) { nvtxDomainRangeEnd((nvtxDomainHandle_t)domain, id); }

uintptr_t gbnvtx_domain_create(const char *name) { return (uintptr_t)nvtxDomainCreateA(name); }

void gbnvtx_domain_destroy(uintptr_t domain) { nvtxDomainDestroy((nvtxDomainHandle_t)domain); }

uintptr_t gbnvtx_register_string(uintptr_t domain, const char *s)
{
    return (uintptr_t)nvtxDomainRegisterStringA((nvtxDomainHandle_t)domain, s);
}

void gbnvtx_name_category(uint32_t category, const char *name) { nvtxNameCategoryA(category, name); }

void gbnvtx_domain_name_category(uintptr_t domain, uint32_t category, const char *name)
{
    nvtxDomainNameCategoryA((nvtxDomainHandle_t)domain, category, name);
}

uint32_t gbnvtx_name_current_thread(const char *name)
{
    // NVTX identifies threads by the kernel thread id (gettid), not by a
    // pthread_t, and glibc before 2.30 has no gettid() wrapper.
    uint32_t tid = (uint32_t)syscall(SYS_gettid);
    nvtxNameOsThreadA(tid, name);
    return tid;
}
