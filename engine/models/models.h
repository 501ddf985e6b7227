/* models.h: the architectures a run can use, built on net.h.
 * resnet18/resnet34: torchvision's layout and parameter names. resnet_small: a 3-stage
 * ResNet for 28-64 px inputs (stem conv3x3 32, no max pool, widths 32/64/128);
 * resnet_small_silu: the same with SiLU for every ReLU of the body.
 * Heads: the fast.ai head (AdaptiveConcatPool, BN1d, Dropout, Linear, ReLU, ...) whose
 * parameters are named after the index in an nn.Sequential of those modules
 * ("head.2.weight" = first BN1d, "head.4.weight" = first Linear, ...), or torchvision's
 * plain avgpool + "fc". Layer groups: G0 = stem + first half of the body, G1 = the rest of
 * the body, G2 = the head. */
#ifndef SGDRD_MODELS_H
#define SGDRD_MODELS_H

#include <stddef.h>
#include <stdint.h>

#include "../net.h"

#define MODEL_MAX_XTRA_FC 4
/* Layer groups of every model here (G0, G1, G2 above): what one LR per group counts. */
#define MODEL_N_GROUPS 3

typedef enum model_head { HEAD_FASTAI, HEAD_PLAIN } model_head;

typedef struct model_spec {
    const char *arch; /* "resnet18", "resnet34", "resnet_small", "resnet_small_silu" */
    int c_in;         /* 1 or 3 */
    int n_classes;
    model_head head;
    float ps[2];      /* dropout before each of the head's two linear layers (fastai) */
    int n_xtra_fc;    /* hidden linear layers of the fastai head (0..MODEL_MAX_XTRA_FC) */
    int xtra_fc[MODEL_MAX_XTRA_FC];
    int multi_label;  /* BCE loss instead of softmax cross-entropy */
    float label_smoothing; /* single-label only: the cross-entropy's eps in [0, 1) */
    int width;        /* resnet_small(_silu): channels of the stem and first stage (the next two
                       * stages double them); 0 is MODEL_SMALL_WIDTH. Other archs: 0 */
    uint64_t seed;
} model_spec;

/* resnet_small's default width, and the range a run may ask for. */
#define MODEL_SMALL_WIDTH 32
#define MODEL_SMALL_WIDTH_MAX 256

/* Fills s with the defaults: fastai head, ps = {0.25, 0.5}, xtra_fc = {512}, c_in 3. */
void model_spec_defaults(model_spec *s);

/* Builds and initialises the model. On failure returns a negative code, *out = NULL, and
 * err names the problem (unknown arch, bad class count, ...). */
int model_create(net **out, const model_spec *s, char *err, size_t errlen);

/* Appends the head s asks for to body_out (group 2). Returns the output node or a
 * negative code with err set. Used by the body builders. */
int model_add_head(net *n, int body_out, const model_spec *s, char *err, size_t errlen);

/* Whether arch names a model this engine builds. */
int model_arch_known(const char *arch);
/* Whether arch is resnet_small or resnet_small_silu: a width of its own, 28 px inputs. */
int model_arch_small(const char *arch);

#endif
