/* head.c: the classifier heads put on a body: fast.ai 0.7's ConvLearner head and
 * torchvision's plain avgpool + fc. */
#include "models.h"

#include <errno.h>
#include <stdio.h>

/* fastai's create_fc_layer: BatchNorm1d, Dropout (only if p > 0), Linear, and a ReLU for
 * hidden layers. Module indices follow fastai's nn.Sequential so names match
 * ("head.2" = BN of the first layer after the pool and flatten). */
static int fc_layer(net *n, int x, int *idx, int out_f, float p, int relu)
{
    char name[NET_NAME_MAX];
    snprintf(name, sizeof(name), "head.%d", (*idx)++);
    x = net_bn(n, x, name, 2);
    if (x >= 0 && p > 0.0f) {
        x = net_dropout(n, x, p, 2);
        (*idx)++;
    }
    snprintf(name, sizeof(name), "head.%d", (*idx)++);
    x = x < 0 ? x : net_linear(n, x, name, out_f, 2);
    if (x >= 0 && relu) {
        x = net_relu(n, x, 2);
        (*idx)++;
    }
    return x;
}

int model_add_head(net *n, int body_out, const model_spec *s, char *err, size_t errlen)
{
    int x;
    if (s->head == HEAD_PLAIN) {
        x = net_avgpool(n, body_out, 2);
        x = x < 0 ? x : net_linear(n, x, "fc", s->n_classes, 2);
        if (x >= 0) {
            /* torch.nn.Linear's default initialisation, as torchvision's fc. */
            n->tensors[n->nodes[x].p_w].init = INIT_UNIFORM_FAN_IN;
            n->tensors[n->nodes[x].p_b].init = INIT_UNIFORM_FAN_IN;
        }
    } else {
        if (s->n_xtra_fc < 0 || s->n_xtra_fc > MODEL_MAX_XTRA_FC) {
            snprintf(err, errlen, "xtra_fc: at most %d hidden layers", MODEL_MAX_XTRA_FC);
            return -EINVAL;
        }
        for (int i = 0; i < 2; i++)
            if (!(s->ps[i] >= 0.0f && s->ps[i] < 1.0f)) {
                snprintf(err, errlen, "ps: dropout %g is outside [0, 1)", (double)s->ps[i]);
                return -EINVAL;
            }
        int idx = 2; /* 0 = AdaptiveConcatPool2d, 1 = Flatten */
        x = net_concatpool(n, body_out, 2);
        for (int i = 0; i < s->n_xtra_fc && x >= 0; i++) {
            if (s->xtra_fc[i] < 1 || s->xtra_fc[i] > 65536) {
                snprintf(err, errlen, "xtra_fc: layer width %d is out of range",
                         s->xtra_fc[i]);
                return -EINVAL;
            }
            x = fc_layer(n, x, &idx, s->xtra_fc[i], s->ps[0], 1);
        }
        x = x < 0 ? x : fc_layer(n, x, &idx, s->n_classes, s->ps[1], 0);
    }
    if (x < 0)
        snprintf(err, errlen, "building the head failed (%d)", x);
    return x;
}
