/* safetensors.c: to be written; see the header. */
