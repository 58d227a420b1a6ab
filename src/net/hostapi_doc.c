/* The host API's OpenAPI 3.1 description (GET /v1/openapi.json). */
#include "net/hostapi.h"

const char tp__hostapi_openapi[] = "{\"openapi\":\"3.1.0\",\"info\":{\"title\":\"transports host "
                                   "API\",\"version\":\"1\"},\"paths\":{}}";
