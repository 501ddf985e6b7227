/* model_upload.h: POST /models, checked while its body streams (model_upload.c). */
#ifndef SGDRD_API_MODEL_UPLOAD_H
#define SGDRD_API_MODEL_UPLOAD_H

#include <stddef.h>

#include "safetensors.h"

/* Headers over this are refused: a torchvision resnet's is a few tens of KB. */
#define API_MODEL_HEADER_MAX (16 * 1024 * 1024)

typedef struct api_req api_req;

/* Checks the name and arch query arguments; on a bad one answers 400 naming it and
 * returns 1, else 0. */
int model_upload_query(api_req *r);
/* Checks a parsed header (or whole file) f against the arch of the query; answers 400 and
 * returns 1 when a run could not start from it, else 0. */
int model_upload_check(api_req *r, const st_file *f);
/* Takes the next size bytes of the body: keeps them only until the header is complete,
 * then checks it. Returns 1 once it has answered a refusal (the rest of the body is then
 * dropped unstored), else 0. */
int model_upload_feed(api_req *r, const char *data, size_t size);

#endif
