// Scalar-only wrappers around the NVTX v3 API for cgo.
//
// The NVTX v3 functions are static inline, so cgo cannot call them directly.
// Every wrapper takes plain integers rather than an nvtxEventAttributes_t so
// that Go never hands C a Go pointer and a push costs exactly one cgo call:
// the attributes struct is assembled on the C stack.
//
// Handles (domains, registered strings) and message pointers travel as
// uintptr_t: tools are free to return handles that are not real pointers,
// and the Go garbage collector must never see such values as pointers.
#ifndef GPUBENCH_NVTX_SHIM_H
#define GPUBENCH_NVTX_SHIM_H

#include <stdint.h>

void gbnvtx_initialize(void);

int gbnvtx_push(int32_t msg_type, uintptr_t msg, uint32_t color, uint32_t category, int32_t payload_type, uint64_t payload);
int gbnvtx_pop(void);
void gbnvtx_mark(int32_t msg_type, uintptr_t msg, uint32_t color, uint32_t category, int32_t payload_type, uint64_t payload);
uint64_t gbnvtx_range_start(int32_t msg_type, uintptr_t msg, uint32_t color, uint32_t category, int32_t payload_type, uint64_t payload);
void gbnvtx_range_end(uint64_t id);

int gbnvtx_domain_push(uintptr_t domain, int32_t msg_type, uintptr_t msg, uint32_t color, uint32_t category, int32_t payload_type, uint64_t payload);
int gbnvtx_domain_pop(uintptr_t domain);
void gbnvtx_domain_mark(uintptr_t domain, int32_t msg_type, uintptr_t msg, uint32_t color, uint32_t category, int32_t payload_type, uint64_t payload);
uint64_t gbnvtx_domain_range_start(uintptr_t domain, int32_t msg_type, uintptr_t msg, uint32_t color, uint32_t category, int32_t payload_type, uint64_t payload);
void gbnvtx_domain_range_end(uintptr_t domain, uint64_t id);

uintptr_t gbnvtx_domain_create(const char *name);
void gbnvtx_domain_destroy(uintptr_t domain);
uintptr_t gbnvtx_register_string(uintptr_t domain, const char *s);
void gbnvtx_name_category(uint32_t category, const char *name);
void gbnvtx_domain_name_category(uintptr_t domain, uint32_t category, const char *name);
uint32_t gbnvtx_name_current_thread(const char *name);

#endif
