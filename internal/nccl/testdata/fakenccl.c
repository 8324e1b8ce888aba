// A stand-in for libnccl.so.2 with the ABI of the calls package nccl binds,
// built by nccl_test.go so that CI, which has no NCCL, checks the binding
// itself: every argument reaches the library as NCCL would receive it.
//
// The all-reduce treats its buffers as host memory and its stream as a
// pointer to a counter it increments: a world of identical ranks sums
// each float to itself times nranks, and averages it to itself.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef int ncclResult_t;
typedef struct { char internal[128]; } ncclUniqueId;
typedef struct fake_comm { int nranks, rank; } *ncclComm_t;

static int group_depth;
static const char *last_error = "";

ncclResult_t ncclGetVersion(int *v) { *v = 22803; return 0; }

// The id's bytes are i ^ 0x5a: ncclCommInitRank checks that they arrive.
ncclResult_t ncclGetUniqueId(ncclUniqueId *id) {
	for (int i = 0; i < 128; i++) id->internal[i] = (char)(i ^ 0x5a);
	return 0;
}

ncclResult_t ncclCommInitRank(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank) {
	for (int i = 0; i < 128; i++) {
		if (id.internal[i] != (char)(i ^ 0x5a)) {
			last_error = "fake: the unique id arrived changed";
			return 4; // ncclInvalidArgument
		}
	}
	struct fake_comm *c = malloc(sizeof *c);
	c->nranks = nranks;
	c->rank = rank;
	*comm = c;
	return 0;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) { free(comm); return 0; }
ncclResult_t ncclCommAbort(ncclComm_t comm) { free(comm); return 0; }

ncclResult_t ncclAllReduce(const void *send, void *recv, size_t count, int dtype, int op, ncclComm_t comm, void *stream) {
	if (dtype != 7 || (op != 0 && op != 4)) { // ncclFloat32; ncclSum, ncclAvg
		last_error = "fake: only float32 sums and averages";
		return 4;
	}
	const float *s = send;
	float *r = recv;
	float n = (float)comm->nranks;
	for (size_t i = 0; i < count; i++) r[i] = op == 0 ? s[i] * n : s[i] * n / n;
	++*(int64_t *)stream;
	return 0;
}

ncclResult_t ncclGroupStart(void) { group_depth++; return 0; }

ncclResult_t ncclGroupEnd(void) {
	if (group_depth == 0) {
		last_error = "fake: ncclGroupEnd without ncclGroupStart";
		return 5; // ncclInvalidUsage
	}
	group_depth--;
	return 0;
}

const char *ncclGetErrorString(ncclResult_t r) {
	switch (r) {
	case 4: return "fake: invalid argument";
	case 5: return "fake: invalid usage";
	}
	return "fake: some error";
}

const char *ncclGetLastError(ncclComm_t comm) { (void)comm; return last_error; }
