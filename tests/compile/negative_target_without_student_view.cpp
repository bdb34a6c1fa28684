// A soft target without student_view.
// clang-format off
// expect: ardent::Distiller: the soft target policy is not an ardent::SoftTarget for these models: it needs a type View and members teacher_view(teacher, x) and student_view(student, x) returning it
// clang-format on
#include <ardent/distill/distiller.hpp>
#include <ardent/models/small_cnn.hpp>

struct TeacherOnly {
  using View = torch::Tensor;
  template <ardent::Model M>
  View teacher_view(M& teacher, const torch::Tensor& x) const {
    return ardent::forward(teacher, x);
  }
};

using Model = ardent::models::SmallCNN;

void ardent_compile_check() {
  ardent::Distiller<Model, Model, ardent::attacks::PGD, ardent::losses::KL, TeacherOnly> distiller(
      Model(), Model(), ardent::attacks::PGD(0.1), ardent::losses::KL(), TeacherOnly{});
}
