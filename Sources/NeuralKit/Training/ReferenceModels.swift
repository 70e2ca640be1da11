/// Ready-made models used by the command-line tool, the tests and the benchmarks.
public enum ReferenceModels {
    /// Creates the Keras MNIST convolutional network: Conv2D(32, 3x3, relu), MaxPooling2D(2x2),
    /// Dropout(0.25), Conv2D(64, 3x3, relu), MaxPooling2D(2x2), Dropout(0.25), Flatten,
    /// Dense(256, relu), Dense(classes, softmax). For 28x28x1 inputs and 10 classes it
    /// has 431,242 parameters.
    public static func mnistConvNet(inputShape: [Int] = [28, 28, 1], classes: Int = 10, seed: UInt64 = 0) -> Sequential {
        Sequential(
            [
                Input(shape: inputShape),
                Conv2D(filters: 32, kernelSize: 3, activation: .relu),
                MaxPooling2D(poolSize: 2),
                Dropout(rate: 0.25),
                Conv2D(filters: 64, kernelSize: 3, activation: .relu),
                MaxPooling2D(poolSize: 2),
                Dropout(rate: 0.25),
                Flatten(),
                Dense(units: 256, activation: .relu),
                Dense(units: classes, activation: .softmax),
            ], seed: seed)
    }
}
