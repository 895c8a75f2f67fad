// The helper writes DeployValidationTests.swift here.
