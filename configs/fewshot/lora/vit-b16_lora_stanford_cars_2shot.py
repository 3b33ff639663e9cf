_base_ = ['../_base_/lora.py']
from mmpetl.datasets import fewshot_set

name, shots = 'stanford_cars', 2
num_classes = fewshot_set(name).num_classes
model = dict(head=dict(num_classes=num_classes))
data_preprocessor = dict(num_classes=num_classes)
train_dataloader = dict(dataset=dict(name=name, shots=shots))
val_dataloader = dict(dataset=dict(name=name))
test_dataloader = dict(dataset=dict(name=name))
