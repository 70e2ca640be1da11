import Foundation
import Testing
import NeuralKit

@Suite struct AdamTests {
    @Test func stepsMatchKerasFormula() {
        let parameter = Parameter(name: "kernel", value: Tensor([1.0]))
        let adam = Adam()
        var m = 0.0
        var v = 0.0
        var w = 1.0
        for (step, g) in [0.5, -0.25, 2.0].enumerated() {
            parameter.gradient = Tensor([Float(g)])
            adam.apply(to: [parameter])

            let t = Double(step + 1)
            m = 0.9 * m + 0.1 * g
            v = 0.999 * v + 0.001 * g * g
            let alpha = 0.001 * (1 - pow(0.999, t)).squareRoot() / (1 - pow(0.9, t))
            w -= alpha * m / (v.squareRoot() + 1e-7)
            #expect(abs(Double(parameter.value.scalars[0]) - w) < 1e-6, "step \(step + 1)")
        }
        #expect(adam.iterations == 3)
    }

    @Test func firstStepMovesByLearningRate() {
        // With bias correction the first step is learningRate * g / (|g| + epsilon'), about 0.001.
        let parameter = Parameter(name: "bias", value: Tensor([1.0]))
        parameter.gradient = Tensor([0.5])
        Adam().apply(to: [parameter])
        #expect(abs(parameter.value.scalars[0] - 0.999) < 1e-6)
    }

    @Test func invalidLearningRateRejectedByCompile() {
        let model = Sequential([Input(shape: [2]), Dense(units: 2, activation: .softmax)])
        let message = errorMessage {
            try model.compile(loss: SparseCategoricalCrossentropy(), optimizer: Adam(learningRate: -1))
        }
        #expect(message == "Adam: learningRate must be a positive number, got -1.0")
    }
}

@Suite struct SGDTests {
    @Test func momentumStep() {
        let parameter = Parameter(name: "kernel", value: Tensor([1.0]))
        let sgd = SGD(learningRate: 0.1, momentum: 0.9)
        parameter.gradient = Tensor([1.0])
        sgd.apply(to: [parameter])
        sgd.apply(to: [parameter])
        // velocity: -0.1, then 0.9 * -0.1 - 0.1 = -0.19; w = 1 - 0.1 - 0.19.
        #expect(abs(parameter.value.scalars[0] - 0.71) < 1e-6)
    }
}
