#include <cblas.h>
// Declared in OpenBLAS's cblas.h; repeated so the module builds against any cblas.h on the path.
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
