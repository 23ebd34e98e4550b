#ifndef API_ASSETS_H
#define API_ASSETS_H

/*
 * Files embedded into the binary at build time (scripts/embed.py): the dashboard from web/
 * (web/index.html is served at /index.html and /) and the OpenAPI document at /openapi.yaml.
 */

#include <stddef.h>

struct api_asset {
    const char *path; /* URL path, e.g. "/index.html" */
    const char *content_type;
    const unsigned char *data;
    size_t len;
    const char *etag; /* strong validator, quoted */
};

extern const struct api_asset api_assets[];
extern const size_t api_assets_count;

/* The asset served at path ("/" is "/index.html"), or NULL. */
const struct api_asset *api_asset_find(const char *path);

#endif
