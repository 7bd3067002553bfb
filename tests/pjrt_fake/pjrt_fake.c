/* A shared library that looks like a PJRT plugin to the loader but is not
 * one: GetPjrtApi returns a function table with the version and size that
 * the build picks (-DFAKE_MAJOR, -DFAKE_MINOR, -DFAKE_FUNCTIONS), and every
 * function slot is null. The PJRT backend must refuse it at open, before
 * calling anything: tests/pjrt.rs loads each variant that build.rs makes. */
#include <stddef.h>

struct version {
    size_t struct_size;
    void *extension_start;
    int major_version;
    int minor_version;
};

struct api {
    size_t struct_size;
    void *extension_start;
    struct version pjrt_api_version;
    void *functions[FAKE_FUNCTIONS];
};

static struct api table = {
    offsetof(struct api, functions) + FAKE_FUNCTIONS * sizeof(void *),
    NULL,
    {sizeof(struct version), NULL, FAKE_MAJOR, FAKE_MINOR},
    {NULL},
};

const struct api *GetPjrtApi(void) { return &table; }
