/* The WebSocket server on libwebsockets: being written (issue 3). */
#include "transports.h"
