#pragma once
// ardent: adversarially robust knowledge distillation on LibTorch. The umbrella header.

#include "ardent/core/attack.hpp"
#include "ardent/core/check.hpp"
#include "ardent/core/mode_guard.hpp"
#include "ardent/core/model.hpp"
#include "ardent/core/objectives.hpp"
#include "ardent/core/targeted_dlr.hpp"

#include "ardent/attacks/apgd.hpp"
#include "ardent/attacks/bim.hpp"
#include "ardent/attacks/cw.hpp"
#include "ardent/attacks/cw_linf.hpp"
#include "ardent/attacks/fgsm.hpp"
#include "ardent/attacks/mifgsm.hpp"
#include "ardent/attacks/none.hpp"
#include "ardent/attacks/pgd.hpp"

#include "ardent/eval/evaluate.hpp"
#include "ardent/eval/report.hpp"

#include "ardent/data/cifar.hpp"
#include "ardent/data/mnist.hpp"
#include "ardent/models/mobilenet_v2.hpp"
#include "ardent/models/resnet.hpp"
#include "ardent/models/small_cnn.hpp"
#include "ardent/models/state_dict.hpp"
#include "ardent/models/wide_resnet.hpp"
