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

#include "ardent/losses/ce.hpp"
#include "ardent/losses/distill_loss.hpp"
#include "ardent/losses/kl.hpp"
#include "ardent/losses/mse.hpp"

#include "ardent/targets/features.hpp"
#include "ardent/targets/logits.hpp"
#include "ardent/targets/outputs.hpp"
#include "ardent/targets/soft_target.hpp"

#include "ardent/distill/adversarial_trainer.hpp"
#include "ardent/distill/distiller.hpp"
#include "ardent/distill/factories.hpp"
#include "ardent/distill/fit.hpp"
#include "ardent/distill/options.hpp"
#include "ardent/distill/recipes.hpp"

#include "ardent/eval/evaluate.hpp"
#include "ardent/eval/report.hpp"

#include "ardent/data/cifar.hpp"
#include "ardent/data/augment.hpp"
#include "ardent/data/batches.hpp"
#include "ardent/data/mnist.hpp"

#include "ardent/train/checkpoint.hpp"
#include "ardent/train/loop.hpp"
#include "ardent/train/metrics.hpp"
#include "ardent/train/progress.hpp"
#include "ardent/models/mobilenet_v2.hpp"
#include "ardent/models/resnet.hpp"
#include "ardent/models/small_cnn.hpp"
#include "ardent/models/state_dict.hpp"
#include "ardent/models/wide_resnet.hpp"
